"""AutoFormer's vision transformer: one module that is both the
weight-entangled supernet and a standalone subnet (spaces/vit.py).

Weight entanglement: every layer keeps one maximal weight and a subnet uses
its leading slice, `W[:in, :out]` (flax kernels are [in, out]). Inside jit
the supernet runs at its maximal sizes and masks what the path does not
use, so a path is data and one compiled program trains every subnet:

  * embedding width e: channels >= e are exactly zero everywhere (patch
    embedding, class token, position embedding, every residual branch);
    LayerNorm takes its mean and variance over the first e channels only;
  * heads h of a layer (head dim fixed, AutoFormer's `change_qkv`): the
    attention output of heads >= h is zero before the output projection;
  * MLP hidden width int(e * ratio): hidden units past it are zero after
    the activation (GELU(0) = 0 does not matter: they are masked after);
  * depth d: layers >= d return their input (the official
    `is_identity_layer`).

The QKV kernel's columns are ordered (head, dim, q/k/v): the official
`qkv_super` takes rows i::3 of its maximal weight for q, k and v, and in
this order that is the leading slice [:, :3 * h * head_dim] of a subnet
with h heads. A standalone subnet (`masked=False`, its own sizes) has the
same names and layouts, so its variables are leading slices of the
supernet's (tests/test_vit.py checks the logits).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bossnax.nn.grouping import block_groups

# timm's trunc_normal_(std=.02) truncates at +-2 in absolute terms, i.e.
# 100 standard deviations: in effect a normal.
_dense_init = nn.initializers.normal(0.02)
# PyTorch's nn.Conv2d default (the official patch embedding keeps it).
_conv_init = nn.initializers.variance_scaling(1.0 / 3, 'fan_in', 'uniform')
LN_EPS = 1e-5  # PyTorch's LayerNorm default, as the official LayerNormSuper


def _torch_bias(fan_in):
  bound = 1.0 / math.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(
      key, shape, dtype, -bound, bound)


def masked_layer_norm(x, mask, width, scale, bias):
  """LayerNorm over the first `width` channels (`mask`: those channels);
  the others stay zero. With every channel kept it is the plain one."""
  xm = x * mask
  mean = xm.sum(-1, keepdims=True) / width
  cent = (x - mean) * mask
  var = (cent * cent).sum(-1, keepdims=True) / width
  return (cent * jax.lax.rsqrt(var + LN_EPS) * scale + bias) * mask


class LayerNorm(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x, mask, width):
    scale = self.param('scale', nn.initializers.ones, (self.features,))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    return masked_layer_norm(x, mask, width, scale.astype(x.dtype),
                             bias.astype(x.dtype))


def relative_index(grid: int, max_distance: int) -> tuple[np.ndarray, ...]:
  """(rows, cols) int32 [N+1, N+1] indices into the relative-position
  tables for a grid x grid patch layout behind a class token: 0 for any
  pair with the class token, else the clipped row / column distance
  shifted to 1 .. 2 * max_distance + 1 (the official RelativePosition2D)."""
  pos = np.arange(grid * grid)
  out = []
  for coord in (pos // grid, pos % grid):
    d = np.clip(coord[None, :] - coord[:, None], -max_distance, max_distance)
    out.append(np.pad(d + max_distance + 1, ((1, 0), (1, 0))).astype(
        np.int32))
  return tuple(out)


def drop_path(mdl, x, rate, mode):
  """Stochastic depth per example (timm's DropPath): in training, the
  branch of an example is dropped with probability `rate` and the rest
  scaled by 1 / (1 - rate)."""
  if mode != 'train' or rate <= 0.0 or mdl.is_initializing():
    return x
  keep = jax.random.bernoulli(mdl.make_rng('dropout'), 1.0 - rate,
                              (x.shape[0],) + (1,) * (x.ndim - 1))
  return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


class EncoderLayer(nn.Module):
  """Pre-norm transformer layer: x + attn(LN(x)), then x + MLP(LN(x))."""
  embed_dim: int  # maximal widths of this layer's weights
  heads: int
  hidden: int
  head_dim: int
  grid: int
  rel_pos: bool
  max_rel_pos: int
  qkv_bias: bool

  @nn.compact
  def __call__(self, x, emb_mask, width, num_heads, hidden, rate, mode):
    b, n, _ = x.shape
    H, D = self.heads, self.head_dim
    h = LayerNorm(self.embed_dim, name='attn_norm')(x, emb_mask, width)
    qkv = nn.Dense(3 * H * D, use_bias=self.qkv_bias, kernel_init=_dense_init,
                   name='qkv')(h).reshape(b, n, H, D, 3)
    q, k, v = qkv[..., 0], qkv[..., 1], qkv[..., 2]
    scale = D ** -0.5
    logits = jnp.einsum('bnhd,bmhd->bhnm', q, k)
    if self.rel_pos:
      rows, cols = relative_index(self.grid, self.max_rel_pos)
      size = 2 * self.max_rel_pos + 2
      table = lambda name: self.param(name, _dense_init, (size, D))
      r_k = table('rel_k_rows')[rows] + table('rel_k_cols')[cols]
      r_v = table('rel_v_rows')[rows] + table('rel_v_cols')[cols]
      logits = logits + jnp.einsum('bnhd,nmd->bhnm', q, r_k.astype(q.dtype))
    attn = jax.nn.softmax((logits * scale).astype(jnp.float32),
                          axis=-1).astype(x.dtype)
    out = jnp.einsum('bhnm,bmhd->bnhd', attn, v)
    if self.rel_pos:
      out = out + jnp.einsum('bhnm,nmd->bnhd', attn, r_v.astype(q.dtype))
    head_mask = (jnp.arange(H) < num_heads).astype(x.dtype)
    out = (out * head_mask[None, None, :, None]).reshape(b, n, H * D)
    out = nn.Dense(self.embed_dim, kernel_init=_dense_init,
                   name='proj')(out) * emb_mask
    x = x + drop_path(self, out, rate, mode)

    h = LayerNorm(self.embed_dim, name='mlp_norm')(x, emb_mask, width)
    h = nn.Dense(self.hidden, kernel_init=_dense_init, name='fc1')(h)
    h = nn.gelu(h.astype(jnp.float32), approximate=False).astype(x.dtype)
    h = h * (jnp.arange(self.hidden) < hidden).astype(x.dtype)
    h = nn.Dense(self.embed_dim, kernel_init=_dense_init,
                 name='fc2')(h) * emb_mask
    return x + drop_path(self, h, rate, mode)


class ViTNetwork(nn.Module):
  """Supernet (`masked=True`: sizes decoded from `arch` with `tables`) or a
  standalone subnet (`masked=False`: its own sizes, `arch` ignored).

  Called as module(x, arch, block=0, mode=..., output=...):
    output='logits'    classifier logits [B, classes];
    output='embed'     the pooled final-norm features [B, embed_dim];
    output='features'  the final-norm tokens [B, N + 1, embed_dim].
  One search block (the whole network): every variable under `block0`.
  `mode` 'train' applies drop path (needs a 'dropout' rng); the network
  has no batch statistics, so the other modes are the same.
  """
  embed_dim: int  # maximal (supernet) or the subnet's
  heads: tuple  # per layer
  hidden: tuple  # per layer, MLP hidden units
  image_size: int = 224
  patch_size: int = 16
  num_classes: int = 1000
  head_dim: int = 64
  rel_pos: bool = True
  max_rel_pos: int = 14
  abs_pos: bool = True
  pool: str = 'mean'  # 'mean' of the patch tokens | 'cls' token
  drop_path: float = 0.0  # the last layer's rate (linear from 0)
  qkv_bias: bool = True
  masked: bool = False
  # masked: (embed values, depth values, mlp-ratio values, heads values,
  # hidden units [embed choice][ratio choice]) of the arch's choice indices
  tables: tuple = ()
  remat: bool = False
  grouped: bool = True

  @property
  def depth(self) -> int:
    return len(self.heads)

  def decode(self, arch):
    """(embedding width, depth, heads per layer, hidden per layer) of a
    flat choice vector [embed, depth, (ratio, heads) per layer]."""
    if not self.masked:
      return (self.embed_dim, self.depth, jnp.asarray(self.heads),
              jnp.asarray(self.hidden))
    embeds, depths, _, heads, hidden = (jnp.asarray(t) for t in self.tables)
    layers = arch[2:2 + 2 * self.depth].reshape(self.depth, 2)
    return (embeds[arch[0]], depths[arch[1]], heads[layers[:, 1]],
            hidden[arch[0], layers[:, 0]])

  @nn.compact
  def __call__(self, x, arch, *, block: int | None = 0, mode='train',
               output='logits', start=False):
    del block, start  # one search block: the whole network, from the image
    E, p = self.embed_dim, self.patch_size
    grid = self.image_size // p
    if x.shape[1] != self.image_size or x.shape[2] != self.image_size:
      raise ValueError(f'vit: images of {x.shape[1]}x{x.shape[2]} where the '
                       f'space has image_size={self.image_size}: set '
                       'space.image_size to data.image_size')
    arch = jnp.asarray(arch, jnp.int32)
    width, depth, heads, hidden = self.decode(arch)
    emb_mask = (jnp.arange(E) < width).astype(x.dtype)
    group = block_groups(self, 1, self.grouped)[0]
    layer_cls = nn.remat(EncoderLayer, static_argnums=(6, 7)) if (
        self.remat) else EncoderLayer

    def body(scope, x):  # parameters of this module go into `scope`
      t = nn.Conv(E, (p, p), strides=p, padding='VALID',
                  kernel_init=_conv_init, bias_init=_torch_bias(p * p * 3),
                  name='patch_embed')(x)
      t = t.reshape(t.shape[0], grid * grid, E)
      cls = scope.param('cls_token', _dense_init, (1, 1, E)).astype(t.dtype)
      t = jnp.concatenate([jnp.broadcast_to(cls, (t.shape[0], 1, E)), t], 1)
      if self.abs_pos:
        t = t + scope.param('pos_embed', _dense_init,
                           (1, grid * grid + 1, E)).astype(t.dtype)
      t = t * emb_mask
      rates = np.linspace(0.0, self.drop_path, self.depth)
      for i in range(self.depth):
        layer = layer_cls(E, self.heads[i], self.hidden[i], self.head_dim,
                          grid, self.rel_pos, self.max_rel_pos, self.qkv_bias,
                          name=f'layer{i}')
        new = layer(t, emb_mask, width, heads[i], hidden[i],
                    float(rates[i]), mode)
        t = jnp.where(i < depth, new, t) if self.masked else new
      t = LayerNorm(E, name='norm')(t, emb_mask, width)
      pooled = t[:, 1:].mean(1) if self.pool == 'mean' else t[:, 0]
      logits = nn.Dense(self.num_classes, kernel_init=_dense_init,
                        name='classifier')(pooled)
      return t, pooled, logits.astype(jnp.float32)

    tokens, pooled, logits = group(body, x)
    if self.is_initializing():  # the contract of every supernet's init
      return [pooled], logits
    return {'logits': logits, 'embed': pooled, 'features': tokens}[output]
