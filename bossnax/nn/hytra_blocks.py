"""HyTra building blocks and the network that is both supernet and standalone.

Scales are numbered 0..3 (1/4, 1/8, 1/16, 1/32 of the image with the ImageNet
stem). The supernet keeps one feature slot per scale with static shapes; at
every layer and every scale the layer may reach, a `lax.switch` either runs
a candidate (ResConv/ResAtt, from the same scale at stride 1 or from the
scale above at stride 2) or returns zeros. Only the active slot matters after
a layer. Under `lax.map` over paths the switch really skips the other
branches (under vmap it would compute them all).

With `fixed` (static choice ids) the same module is the standalone network:
no switches, only the path's candidates and variants are created, under the
same names, so its variables are a subtree of the supernet's.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from bossnax.nn.grouping import block_groups
from bossnax.nn.switchable import SwitchableBatchNorm

_conv_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')
# fan_out of a depthwise kernel (k, k, 1, C) would count C: use fan_in (k*k).
_dw_init = nn.initializers.variance_scaling(2.0, 'fan_in', 'normal')


def conv(features, kernel, stride=1, groups=1, pad=None, name=None):
  pad = (kernel - 1) // 2 if pad is None else pad  # PyTorch's padding
  return nn.Conv(features, (kernel, kernel), strides=stride,
                 padding=[(pad, pad), (pad, pad)], feature_group_count=groups,
                 use_bias=False, name=name,
                 kernel_init=_dw_init if groups > 1 else _conv_init)


def bn(features, name, scale_init=1.0):
  return SwitchableBatchNorm(1, features, scale_init=scale_init, name=name)


def mhsa(qkv, heads):
  """softmax(Q K^T / sqrt(d)) V over the H*W positions; qkv [B, H, W, 3C]."""
  b, h, w, c3 = qkv.shape
  c = c3 // 3
  d = c // heads
  q, k, v = [t[:, :, 0] for t in jnp.split(
      qkv.reshape(b, h * w, 3, heads, d), 3, axis=2)]
  logits = jnp.einsum('bnhd,bmhd->bhnm', q, k).astype(jnp.float32)
  attn = jax.nn.softmax(logits / math.sqrt(d), axis=-1).astype(qkv.dtype)
  return jnp.einsum('bhnm,bmhd->bnhd', attn, v).reshape(b, h, w, c)


class Enter(nn.Module):
  """1x1 to the bottleneck, 3x3 depthwise conv (position encoding; it does
  the stride), BN. One per stride variant: not shared."""
  features: int
  stride: int

  @nn.compact
  def __call__(self, x, mode):
    x = conv(self.features, 1, name='proj')(x)
    x = conv(self.features, 3, self.stride, groups=self.features,
             name='pe')(x)
    return bn(self.features, 'bn')(x, 0, mode)


class Shortcut(nn.Module):
  """Identity, 1x1 conv (width change) or 3x3 conv (from the scale above),
  each with BN and ReLU, as the official ops."""
  features: int
  up: bool
  stride: int

  @nn.compact
  def __call__(self, x, mode):
    if self.up:
      y = conv(self.features, 3, self.stride, name='conv')(x)
    elif x.shape[-1] == self.features:
      return x
    else:
      y = conv(self.features, 1, name='conv')(x)
    return nn.relu(bn(self.features, 'bn')(y, 0, mode))


class Candidate(nn.Module):
  """ResConv (kind 'conv') or ResAtt (kind 'att', no relative position
  encoding). Its stride-1 and up (stride-2) variants share everything but
  `enter1`/`enter2` and `short1`/`short2`."""
  kind: str
  bottleneck: int
  features: int
  heads: int = 0

  @nn.compact
  def __call__(self, x, up: bool, stride: int, mode):
    tag = '2' if up else '1'
    b = self.bottleneck
    h = nn.relu(Enter(b, stride, name='enter' + tag)(x, mode))
    if self.kind == 'conv':
      h = conv(b, 3, name='conv')(h)
    else:
      h = mhsa(conv(3 * b, 1, name='qkv')(h), self.heads)
    h = nn.relu(bn(b, 'bn2')(h, 0, mode))
    h = conv(self.features, 1, name='expand')(h)
    # Zero-initialised last BN scale (both official ops): a fresh candidate
    # starts as its shortcut.
    h = bn(self.features, 'bn3', scale_init=0.0)(h, 0, mode)
    short = Shortcut(self.features, up, stride, name='short' + tag)(x, mode)
    return nn.relu(h + short)


class EntryDown(nn.Module):
  """Down-sampling before layer 1: depthwise conv kernel = stride, 1x1 to
  the first layer's bottleneck, BN (official supernet)."""
  features: int
  stride: int

  @nn.compact
  def __call__(self, x, mode):
    c = x.shape[-1]
    x = conv(c, self.stride, self.stride, groups=c, pad=0, name='dw')(x)
    x = conv(self.features, 1, name='pw')(x)
    return bn(self.features, 'bn')(x, 0, mode)


def pick(mdl, index, branches, *operands):
  """Lifted lax.switch over branches with different variables: at init every
  branch runs (so all variables exist) and the indexed result is kept."""
  if mdl.is_initializing():
    outs = [f(mdl, *operands) for f in branches]
    return jax.tree.map(lambda *o: jnp.stack(o)[index], *outs)
  return nn.switch(index, branches, mdl, *operands)


# branch codes of a Site: 0 inactive, then (kind, up) pairs
_CODES = {('conv', False): 1, ('conv', True): 2, ('att', False): 3,
          ('att', True): 4}


class Site(nn.Module):
  """The candidates of one layer at one scale."""
  bottleneck: int
  features: int
  heads: int  # 0: no ResAtt at this scale
  up_stride: int = 2
  entry_stride: int = 0  # layer 1: the entry module's stride, else 0

  def setup(self):
    self.conv = Candidate('conv', self.bottleneck, self.features)
    if self.heads:
      self.att = Candidate('att', self.bottleneck, self.features, self.heads)
    if self.entry_stride:
      self.entry = EntryDown(self.bottleneck, self.entry_stride)

  def run(self, kind, up, same, above, mode):
    if self.entry_stride:
      same = self.entry(same, mode)
    cand = self.conv if kind == 'conv' else self.att
    return cand(above if up else same, up, self.up_stride if up else 1, mode)

  def __call__(self, code, same, above, mode, out_shape):
    """`code` (traced) picks the branch; `same`/`above` may be None."""
    kinds = ('conv', 'att') if self.heads else ('conv',)
    avail = [(k, u) for k in kinds for u in (False, True)
             if (above if u else same) is not None]
    branches = [lambda m, s, a: jnp.zeros(out_shape, (s if s is not None
                                                     else a).dtype)]
    table = [0] * 5  # code -> branch position; unavailable -> zeros
    for k, u in avail:
      table[_CODES[(k, u)]] = len(branches)
      branches.append(lambda m, s, a, k=k, u=u: m.run(k, u, s, a, mode))
    index = jnp.asarray(table, jnp.int32)[code]
    return pick(self, index, branches, same, above)


class Adapter(nn.Module):
  """Block output at one scale -> [B, embed_dim]: depthwise conv kernel =
  stride down to the last scale, 1x1, BN, no ReLU (official neck); the
  identity where nothing changes; then global average pooling."""
  features: int
  ratio: int

  @nn.compact
  def __call__(self, x, mode):
    c = x.shape[-1]
    if self.ratio > 1:
      x = conv(c, self.ratio, self.ratio, groups=c, pad=0, name='dw')(x)
    if self.ratio > 1 or c != self.features:
      x = conv(self.features, 1, name='pw')(x)
      x = bn(self.features, 'bn')(x, 0, mode)
    return x.mean((1, 2))


class Embed(nn.Module):
  """Block k's adapters, one per scale the block may end at."""
  features: int
  ratios: tuple  # (scale, ratio) pairs

  def setup(self):
    for s, r in self.ratios:
      setattr(self, f's{s}', Adapter(self.features, r))

  def __call__(self, slots, stage, mode):
    scales = [s for s, _ in self.ratios]
    if len(scales) == 1:  # standalone: static
      return getattr(self, f's{scales[0]}')(slots[scales[0]], mode)
    branches = [lambda m, xs, s=s: getattr(m, f's{s}')(xs[s], mode)
                for s in scales]
    table = jnp.asarray([scales.index(s) if s in scales else 0
                         for s in range(4)], jnp.int32)
    return pick(self, table[stage], branches, slots)


def _stem(scope, net, x, mode):
  del scope  # modules created here land in block 0's group
  if net.stem == 'imagenet':
    x = conv(net.stem_width, 7, 2, name='stem_conv')(x)
  elif net.stem == 'cifar':
    x = conv(net.stem_width, 3, 1, name='stem_conv')(x)
  else:
    raise ValueError(f"hytra stem {net.stem!r}: use 'imagenet' or 'cifar'")
  x = nn.relu(bn(net.stem_width, 'stem_bn')(x, 0, mode))
  if net.stem == 'imagenet':
    x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
  return x


class HyTraNetwork(nn.Module):
  """Supernet (`fixed=None`) or standalone network (`fixed` = choice ids).

  Call with a flat int32 `arch` (one choice id per layer) and:
    output='embed'    block `block`'s output through its adapter: [B, D];
    output='features' block `block`'s output: a dict scale -> map (zeros
                      where inactive) in the supernet, the map standalone;
    output='logits'   the whole network, the last block's adapter, pooled,
                      and the classifier.
  Blocks before `block` run under stop_gradient, BN 'frozen' while training.
  """
  choices: tuple  # choice id -> (scale, kind), kind 0 = ResAtt 1 = ResConv
  block_stages: tuple  # scales each block's layers may use
  bottlenecks: tuple = (64, 128, 256, 512)
  heads: tuple = (0, 0, 4, 8)
  stem_width: int = 64
  stem: str = 'imagenet'
  last_stride: int = 2
  embed_dim: int = 2048
  num_classes: int = 1000
  fixed: tuple | None = None
  depth: int = 4  # layers per block (4: the paper's 16-layer fabric)
  # Recompute each layer's activations in the backward pass (one site at a
  # time), so only layer inputs live across the backward: the switch for
  # large HyTra batches.
  remat: bool = False
  # Variables under block{k} (False: the ungrouped layout `grouping.init`
  # draws initial values in).
  grouped: bool = True

  def _res(self, r0):
    """Static side length of every scale's slot."""
    res = [r0 // 2 ** s for s in range(3)]
    return res + [res[2] // self.last_stride]

  def _scales(self, layer):
    if self.fixed is not None:
      return (self.choices[self.fixed[layer]][0],)
    return tuple(self.block_stages[layer // self.depth])

  @nn.compact
  def __call__(self, x, arch, *, block: int | None = None, mode='train',
               output='embed', start: bool = False):
    """start=True: `x` is the output of block `block - 1` (its 'features',
    computed once for all paths of a step) and only block `block` runs."""
    init_all = self.is_initializing()
    whole = output == 'logits' or init_all
    last = 3 if whole else block
    start = start and not whole and block > 0
    stage_tab = jnp.asarray([c[0] for c in self.choices], jnp.int32)
    att_tab = jnp.asarray([c[1] == 0 for c in self.choices], jnp.int32)
    if self.fixed is not None:
      arch = jnp.asarray(self.fixed, jnp.int32)
    stage, is_att = stage_tab[arch], att_tab[arch]

    def layer_mode(k):
      return 'frozen' if (not whole and mode == 'train' and k < block) \
          else mode

    # Every variable lives under the block that owns it (nn/grouping.py).
    group = block_groups(self, 4, self.grouped)
    slots, outs = {}, {}
    if start:  # x: block `block - 1`'s slots, a dict scale -> map
      slots = dict(x)
      s0 = min(slots)
      n = slots[s0].shape[1]
      res = self._res(n * 2 ** s0 if s0 < 3 else n * 4 * self.last_stride)
      batch, h = slots[s0].shape[0], None
    else:
      h = group[0](_stem, self, x, layer_mode(0))
      if h.shape[1] % 8 or h.shape[2] % 8:
        raise ValueError(f'hytra: the stem output {h.shape[1:3]} must be a '
                         'multiple of 8 (four scales)')
      res = self._res(h.shape[1])
      batch = h.shape[0]
    SiteCls = nn.remat(Site, static_argnums=(4, 5)) if (
        self.remat and self.fixed is None) else Site
    d = self.depth
    def run_layer(scope, i, h, slots):
      del scope
      k, new = i // d, {}
      for s in self._scales(i):
        b = self.bottlenecks[s]
        site = SiteCls(b, 4 * b, self.heads[s],
                       up_stride=self.last_stride if s == 3 else 2,
                       entry_stride=res[0] // res[s] if i == 0 else 0,
                       name=f'layer{i}_s{s}')
        same = h if i == 0 else slots.get(s)
        above = None if i == 0 or s == 0 else slots.get(s - 1)
        up = False if i == 0 else stage[i - 1] == s - 1
        code = jnp.where(stage[i] == s, 1 + up + 2 * is_att[i], 0)
        shape = (batch, res[s], res[s], 4 * b)
        if self.fixed is not None:  # static path: no switch
          kind = 'att' if self.choices[self.fixed[i]][1] == 0 else 'conv'
          up = i > 0 and self._scales(i - 1)[0] == s - 1
          new[s] = site.run(kind, up, same, above, layer_mode(k))
        else:
          new[s] = site(code, same, above, layer_mode(k), shape)
      return new

    for i in range(d * block if start else 0, d * (last + 1)):
      k = i // d
      slots = group[k](run_layer, i, h, slots)
      if i % d == d - 1:
        outs[k] = slots
        if not whole and k < block:
          slots = jax.lax.stop_gradient(slots)  # finished blocks stay fixed

    def embed(k, m):
      ratios = tuple((s, res[s] // res[3]) for s in self._scales(d * k + d - 1))
      return group[k](lambda scope: Embed(self.embed_dim, ratios,
                                          name=f'embed{k}')(
          outs[k], stage[d * k + d - 1], m))

    classify = lambda e: group[3](
        lambda scope: nn.Dense(self.num_classes, name='classifier')(e))
    if init_all:  # every adapter and the classifier
      embeds = [embed(k, mode) for k in range(4)]
      return embeds, classify(embeds[-1])
    if output == 'features':
      return outs[block] if self.fixed is None else next(
          iter(outs[block].values()))
    if output == 'logits':
      return classify(embed(3, mode))
    return embed(block, mode)
