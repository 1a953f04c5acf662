"""AutoFormer's vision-transformer space (Chen et al., ICCV 2021): one
global embedding width, a depth, and per layer an MLP ratio and a number
of heads, all sharing the leading slices of one maximal weight per layer
(bossnax/nn/vit_blocks.py; docs/autoformer.md).

An architecture is one block of choice indices, flat:

    [embed, depth, ratio_0, heads_0, ratio_1, heads_1, ...]   (2 + 2 x max depth)

Layers at or past the depth are skipped; their genes are held at index 0,
so every architecture has one vector and one string. The string form is
the embedding width, then ratio/heads per layer (the depth is their count;
'-' between layers keeps it one CSV field and one shell word):

    192:3.5/3-3.5/3-3.0/3-3.5/3-3.0/3-3.0/3-4.0/3-4.0/3-3.5/3-4.0/3-3.5/4-4.0/3-3.5/3

Layouts T, S and B are the official supernets (the experiments/supernet
yamls of microsoft/Cream's AutoFormer); a gene's admissible values are its
searched values, those the layout's released subnet uses (AutoFormer-T has
MLP ratio 3.0, outside T's searched 3.5 / 4) and `extra_*`: training and
the searches draw only searched values, any admissible one can be described,
scored, exported and retrained.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from bossnax.spaces.base import (Arch, Block, Layer, SearchSpace,
                                 leading_slices)


@dataclasses.dataclass(frozen=True)
class ViTLayout:
  embed_dims: tuple
  depths: tuple
  mlp_ratios: tuple
  heads: tuple
  super_embed_dim: int  # the supernet's maximal widths
  super_mlp_ratio: float
  super_heads: int
  subnet: str  # the released subnet of this layout


# microsoft/Cream AutoFormer/experiments/supernet/supernet-{T,S,B}.yaml
# (SUPERNET and SEARCH_SPACE); B's subnet yaml lists heads 8/9/10, its
# supernet yaml (what trained it) 9/10.
LAYOUTS = {
    'T': ViTLayout((192, 216, 240), (12, 13, 14), (3.5, 4.0), (3, 4), 256,
                   4.0, 4, 'AutoFormer-T'),
    'S': ViTLayout((320, 384, 448), (12, 13, 14), (3.0, 3.5, 4.0), (5, 6, 7),
                   448, 4.0, 7, 'AutoFormer-S'),
    'B': ViTLayout((528, 576, 624), (14, 15, 16), (3.0, 3.5, 4.0), (9, 10),
                   640, 4.0, 10, 'AutoFormer-B'),
}

# The released subnets (experiments/subnet/AutoFormer-{T,S,B}.yaml RETRAIN):
# (embedding width, MLP ratio per layer, heads per layer).
SUBNETS = {
    'AutoFormer-T': (192, (3.5, 3.5, 3.0, 3.5, 3.0, 3.0, 4.0, 4.0, 3.5, 4.0,
                           3.5, 4.0, 3.5),
                     (3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4, 3, 3)),
    'AutoFormer-S': (384, (3.0, 3.5, 3.0, 3.5, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0,
                           4.0, 3.5, 4.0),
                     (6, 6, 5, 7, 5, 5, 5, 6, 6, 7, 7, 6, 7)),
    'AutoFormer-B': (576, (3.5, 3.5, 4.0, 3.5, 4.0, 3.5, 3.5, 3.0, 4.0, 4.0,
                           3.0, 4.0, 3.0, 3.5),
                     (9, 9, 9, 9, 9, 10, 9, 9, 10, 9, 10, 9, 9, 10)),
}


def vit_cost(embed, ratios, heads, *, image_size=224, patch_size=16,
             num_classes=1000, head_dim=64, rel_pos=True, max_rel_pos=14,
             abs_pos=True, qkv_bias=True):
  """(multiply-adds of one image, parameters) of a subnet.

  Parameters as the official `get_sampled_params_numel`: patch embedding,
  class token, position embedding (when absolute), per layer two
  LayerNorms, QKV (heads x head_dim x 3, bias), output projection, the MLP
  (hidden int(embed x ratio)), the four relative-position tables (when
  on), the final LayerNorm and the classifier. Multiply-adds: every
  matrix product over the N + 1 tokens (patch embedding, QKV, QK^T, AV,
  the relative-position products, projection, MLP) and the classifier;
  LayerNorm, softmax, GELU and additions are not counted."""
  grid = image_size // patch_size
  n = grid * grid
  tokens = n + 1
  e = int(embed)
  params = patch_size * patch_size * 3 * e + e + e  # patch conv + cls
  params += tokens * e if abs_pos else 0
  madds = n * patch_size * patch_size * 3 * e
  for r, h in zip(ratios, heads):
    q = int(h) * head_dim
    hid = int(e * float(r))
    params += 4 * e  # two LayerNorms
    params += e * 3 * q + (3 * q if qkv_bias else 0) + q * e + e
    params += e * hid + hid + hid * e + e
    madds += tokens * (e * 3 * q + q * e + 2 * e * hid)
    madds += 2 * tokens * tokens * q  # QK^T and AV
    if rel_pos:
      params += 4 * (2 * max_rel_pos + 2) * head_dim
      madds += 2 * tokens * tokens * q  # q.r_k and attn.r_v
  params += 2 * e + e * num_classes + num_classes
  madds += e * num_classes
  return int(madds), int(params)


def _ratio(r) -> str:
  """3.0 -> '3.0', 3.25 -> '3.25'."""
  return f'{r:.1f}' if round(r, 1) == r else f'{r:g}'


class ViTSpace(SearchSpace):
  name = 'vit'
  path_batching = 'vmap'  # masked: every subnet has the supernet's shapes
  batch_norm = False  # LayerNorm only: nothing to recalibrate

  def __init__(self, layout='T', embed_dims=(), depths=(), mlp_ratios=(),
               heads=(), extra_mlp_ratios=(), extra_heads=(),
               super_embed_dim=0, super_mlp_ratio=0.0, super_heads=0,
               head_dim=64, image_size=224, patch_size=16, num_classes=1000,
               rel_pos=True, max_rel_pos=14, abs_pos=True, pool='mean',
               drop_path=0.1, qkv_bias=True):
    """`layout` (T, S, B) gives the searched lists and the supernet's
    maximal sizes; the other fields, when set, replace them."""
    if layout not in LAYOUTS:
      raise ValueError(f'vit layout {layout!r}: use one of '
                       f'{", ".join(LAYOUTS)}')
    lay = LAYOUTS[layout]
    self.layout = layout
    self.embed_dims = tuple(int(v) for v in embed_dims or lay.embed_dims)
    self.depths = tuple(int(v) for v in depths or lay.depths)
    self.mlp_ratios = tuple(float(v) for v in mlp_ratios or lay.mlp_ratios)
    self.heads = tuple(int(v) for v in heads or lay.heads)
    self.extra_mlp_ratios = tuple(float(v) for v in extra_mlp_ratios)
    self.extra_heads = tuple(int(v) for v in extra_heads)
    self.super_embed_dim = int(super_embed_dim)
    self.super_mlp_ratio = float(super_mlp_ratio)
    self.super_heads = int(super_heads)
    self.head_dim, self.image_size = int(head_dim), int(image_size)
    self.patch_size, self.num_classes = int(patch_size), int(num_classes)
    self.rel_pos, self.max_rel_pos = bool(rel_pos), int(max_rel_pos)
    self.abs_pos, self.pool = bool(abs_pos), pool
    self.drop_path, self.qkv_bias = float(drop_path), bool(qkv_bias)
    if pool not in ('mean', 'cls'):
      raise ValueError(f"space.pool={pool!r}: use 'mean' (of the patch "
                       "tokens, the official --gp) or 'cls'")
    if self.image_size % self.patch_size:
      raise ValueError(f'space.image_size={self.image_size} is not a multiple '
                       f'of space.patch_size={self.patch_size}')
    custom = bool(embed_dims or depths or mlp_ratios or heads)
    # The supernet's maximal sizes: the layout's, or the lists' maxima.
    sub = SUBNETS[lay.subnet]
    self.max_embed = self.super_embed_dim or (
        max(self.embed_dims) if custom else lay.super_embed_dim)
    self.max_ratio = self.super_mlp_ratio or (
        max(self.mlp_ratios + self.extra_mlp_ratios) if custom
        else lay.super_mlp_ratio)
    self.max_heads = self.super_heads or (
        max(self.heads + self.extra_heads) if custom else lay.super_heads)
    # Admissible values: searched, the layout's subnet's, extra.
    ratios = set(self.mlp_ratios) | set(self.extra_mlp_ratios)
    heads_ok = set(self.heads) | set(self.extra_heads)
    if not custom:
      ratios |= set(sub[1])
      heads_ok |= set(sub[2])
    self.ratio_values = tuple(sorted(ratios))
    self.heads_values = tuple(sorted(heads_ok))
    self.embed_values = tuple(sorted(set(self.embed_dims)))
    self.depth_values = tuple(sorted(set(self.depths)))
    self.max_depth = max(self.depth_values)
    for what, values, top in (
        ('embed_dims', self.embed_values, self.max_embed),
        ('mlp_ratios', self.ratio_values, self.max_ratio),
        ('heads', self.heads_values, self.max_heads)):
      if max(values) > top or min(values) <= 0:
        raise ValueError(f'space.{what}: values {values} must be in (0, '
                         f'{top}], the supernet\'s maximum')
    layers = [Layer('embed', self.embed_values),
              Layer('depth', self.depth_values)]
    for i in range(self.max_depth):
      layers += [Layer(f'l{i}.mlp_ratio', self.ratio_values),
                 Layer(f'l{i}.heads', self.heads_values)]
    self.blocks = (Block('vit', tuple(layers)),)
    # the choice indices training and the searches draw from
    pick = lambda values, searched: np.asarray(
        [values.index(v) for v in searched], np.int32)
    self._searched = (pick(self.embed_values, self.embed_dims),
                      pick(self.depth_values, self.depths),
                      pick(self.ratio_values, self.mlp_ratios),
                      pick(self.heads_values, self.heads))

  @property
  def space_kwargs(self):
    return {'layout': self.layout, 'embed_dims': list(self.embed_dims),
            'depths': list(self.depths), 'mlp_ratios': list(self.mlp_ratios),
            'heads': list(self.heads),
            'extra_mlp_ratios': list(self.extra_mlp_ratios),
            'extra_heads': list(self.extra_heads),
            'super_embed_dim': self.max_embed,
            'super_mlp_ratio': self.max_ratio, 'super_heads': self.max_heads,
            'head_dim': self.head_dim, 'image_size': self.image_size,
            'patch_size': self.patch_size, 'num_classes': self.num_classes,
            'rel_pos': self.rel_pos, 'max_rel_pos': self.max_rel_pos,
            'abs_pos': self.abs_pos, 'pool': self.pool,
            'drop_path': self.drop_path, 'qkv_bias': self.qkv_bias}

  def block_output_varies(self, k):
    return True  # the embedding width is searched

  # -- the genes --------------------------------------------------------------
  def values(self, arch: Arch):
    """(embedding width, [(MLP ratio, heads)] of the active layers)."""
    f = self.flatten(arch)
    d = self.depth_values[f[1]]
    layers = f[2:2 + 2 * d].reshape(d, 2)
    return self.embed_values[f[0]], [(self.ratio_values[r],
                                      self.heads_values[h])
                                     for r, h in layers]

  def from_values(self, embed, layers) -> Arch:
    """The architecture of an embedding width and (ratio, heads) per
    layer; a value the space does not admit fails in one line."""
    def index(values, v, what):
      for i, u in enumerate(values):
        if abs(float(u) - float(v)) < 1e-9:
          return i
      more = (f'; space.extra_{what.replace(" ", "_")} admits more'
              if what in ('mlp ratios', 'heads') else '')
      raise ValueError(f'vit: {what} {v} is not admitted by this space '
                       f'({", ".join(map(str, values))}{more})')
    flat = np.zeros(self.num_layers, np.int32)
    flat[0] = index(self.embed_values, embed, 'embedding widths')
    flat[1] = index(self.depth_values, len(layers), 'depths')
    for i, (r, h) in enumerate(layers):
      flat[2 + 2 * i] = index(self.ratio_values, r, 'mlp ratios')
      flat[3 + 2 * i] = index(self.heads_values, h, 'heads')
    return self.unflatten(flat)

  def canonical(self, flat):
    """The vector with the genes of skipped layers set to 0."""
    flat = np.asarray(flat, np.int32).copy()
    d = self.depth_values[flat[1]]
    flat[2 + 2 * d:] = 0
    return flat

  # -- strings ---------------------------------------------------------------------
  def to_string(self, arch: Arch) -> str:
    embed, layers = self.values(arch)
    return f'{embed}:' + '-'.join(f'{_ratio(r)}/{h}' for r, h in layers)

  def from_string(self, text: str) -> Arch:
    try:
      embed, _, rest = text.strip().partition(':')
      layers = [tuple(part.split('/')) for part in rest.split('-')]
      values = int(embed), [(float(r), int(h)) for r, h in layers]
    except ValueError:
      raise ValueError(f'vit architecture {text!r}: the embedding width, '
                       "':', then MLP-ratio/heads per layer separated by '-', "
                       'e.g. 192:3.5/3-4.0/4 (or a name: '
                       f'{", ".join(SUBNETS)})') from None
    return self.from_values(*values)

  def named_architectures(self):
    out = {}
    for name, (embed, ratios, heads) in SUBNETS.items():
      try:
        out[name] = self.from_values(embed, list(zip(ratios, heads)))
      except ValueError:  # another layout's subnet
        pass
    return out

  def parse(self, text):
    if text in SUBNETS and text not in self.named_architectures():
      raise ValueError(f'{text} is not a subnet of the {self.layout} '
                       f'layout: use space.layout={text[-1]}')
    return super().parse(text)

  # -- enumeration and sampling (too many to list) ---------------------------------
  def count(self) -> int:
    """Architectures with searched values only (skipped layers' genes
    do not count)."""
    e, _, r, h = (len(s) for s in self._searched)
    return sum(e * (r * h) ** d for d in self.depths)

  def is_cartesian(self, k):
    return False

  def block_paths(self, k, prefix=()):
    raise ValueError(f'the vit space has {self.count():.3g} architectures: '
                     'too many to list; use a one-shot method '
                     '(--config.method=autoformer or supervised_oneshot) and '
                     'a whole-architecture search (search.strategy=evolution)')

  def is_valid(self, arch) -> bool:
    try:
      flat = self.flatten(arch)
    except ValueError:
      return False
    ok = [0 <= c < l.num_choices for c, l in zip(flat, self.layers)]
    return all(ok) and np.array_equal(flat, self.canonical(flat))

  def sample(self, rng: np.random.Generator) -> Arch:
    """AutoFormer's uniform subnet: depth, then per layer its MLP ratio and
    heads, and one embedding width, each uniform over the searched values
    (a depth is as likely as any other, whatever its number of subnets)."""
    emb, dep, rat, hd = self._searched
    flat = np.zeros(self.num_layers, np.int32)
    flat[1] = dep[rng.integers(len(dep))]
    d = self.depth_values[flat[1]]
    for i in range(d):
      flat[2 + 2 * i] = rat[rng.integers(len(rat))]
      flat[3 + 2 * i] = hd[rng.integers(len(hd))]
    flat[0] = emb[rng.integers(len(emb))]
    return self.unflatten(flat)

  def mutate(self, arch, rng, prob=0.2, structure_prob=0.4):
    """AutoFormer's mutation (its evolution.py): with probability
    `structure_prob` a new depth (new layers drawn at random, removed ones
    dropped), each layer's MLP ratio and heads redrawn with probability
    `prob`, then the embedding width with `structure_prob`; every draw
    uniform over the searched values."""
    emb, dep, rat, hd = self._searched
    flat = self.flatten(arch).copy()
    old = self.depth_values[flat[1]]
    if rng.random() < structure_prob:
      flat[1] = dep[rng.integers(len(dep))]
    d = self.depth_values[flat[1]]
    for i in range(old, d):
      flat[2 + 2 * i] = rat[rng.integers(len(rat))]
      flat[3 + 2 * i] = hd[rng.integers(len(hd))]
    for i in range(d):
      if rng.random() < prob:
        flat[2 + 2 * i] = rat[rng.integers(len(rat))]
    for i in range(d):
      if rng.random() < prob:
        flat[3 + 2 * i] = hd[rng.integers(len(hd))]
    if rng.random() < structure_prob:
      flat[0] = emb[rng.integers(len(emb))]
    return self.unflatten(self.canonical(flat))

  def can_cross(self, a, b) -> bool:
    """AutoFormer crosses only parents of the same depth."""
    return self.flatten(a)[1] == self.flatten(b)[1]

  def crossover(self, a, b, rng):
    """Each gene from either parent with probability 1/2 (same depths:
    `can_cross`)."""
    fa, fb = self.flatten(a), self.flatten(b)
    if fa[1] != fb[1]:
      raise ValueError('vit: crossover needs parents of the same depth')
    take = rng.random(fa.shape[0]) < 0.5
    return self.unflatten(self.canonical(np.where(take, fa, fb)))

  def _extreme(self, pick):
    emb, dep, rat, hd = (np.asarray(s) for s in self._searched)
    flat = np.zeros(self.num_layers, np.int32)
    flat[0], flat[1] = pick(emb), pick(dep)
    for i in range(self.depth_values[flat[1]]):
      flat[2 + 2 * i], flat[3 + 2 * i] = pick(rat), pick(hd)
    return self.unflatten(flat)

  def largest(self):
    return self._extreme(np.max)  # values are sorted: the largest index

  def smallest(self):
    return self._extreme(np.min)

  def default_arch(self):
    return self.largest()

  # -- cost ----------------------------------------------------------------------------
  def _cost_kw(self, resolution=None):
    return dict(image_size=resolution or self.image_size,
                patch_size=self.patch_size, num_classes=self.num_classes,
                head_dim=self.head_dim, rel_pos=self.rel_pos,
                max_rel_pos=self.max_rel_pos, abs_pos=self.abs_pos,
                qkv_bias=self.qkv_bias)

  def flops_params(self, arch, resolution=None, **kw):
    embed, layers = self.values(arch)
    return vit_cost(embed, [r for r, _ in layers], [h for _, h in layers],
                    **self._cost_kw(resolution))

  def describe_named(self, text, resolution=None):
    """A released subnet is counted whatever this space's lists are."""
    if text not in SUBNETS:
      return self.describe(self.parse(text), resolution=resolution)
    embed, ratios, heads = SUBNETS[text]
    flops, params = vit_cost(embed, ratios, heads,
                             **self._cost_kw(resolution))
    layers = '-'.join(f'{_ratio(r)}/{h}' for r, h in zip(ratios, heads))
    return {'space': self.name, 'arch': f'{embed}:{layers}', 'name': text,
            'flops': flops, 'params': params, 'flops_M': round(flops / 1e6, 3),
            'params_M': round(params / 1e6, 4),
            'resolution': resolution or self.image_size}

  # -- networks ---------------------------------------------------------------------------
  def _tables(self):
    hidden = tuple(tuple(int(e * r) for r in self.ratio_values)
                   for e in self.embed_values)
    return (self.embed_values, self.depth_values, self.ratio_values,
            self.heads_values, hidden)

  def _network(self, embed, heads, hidden, masked, remat=False):
    from bossnax.nn.vit_blocks import ViTNetwork
    return ViTNetwork(
        embed_dim=embed, heads=tuple(heads), hidden=tuple(hidden),
        image_size=self.image_size, patch_size=self.patch_size,
        num_classes=self.num_classes, head_dim=self.head_dim,
        rel_pos=self.rel_pos, max_rel_pos=self.max_rel_pos,
        abs_pos=self.abs_pos, pool=self.pool, drop_path=self.drop_path,
        qkv_bias=self.qkv_bias, masked=masked,
        tables=self._tables() if masked else (), remat=remat)

  def supernet(self, embed_dim=None, remat=False):
    del embed_dim  # the classifier and heads read the pooled tokens
    d = self.max_depth
    return self._network(self.max_embed, (self.max_heads,) * d,
                         (int(self.max_embed * self.max_ratio),) * d, True,
                         remat)

  def standalone(self, arch):
    embed, layers = self.values(arch)
    net = self._network(embed, [h for _, h in layers],
                        [int(embed * r) for r, _ in layers], False)
    return net, self.flatten(arch)

  def slice_variables(self, variables, arch, image_size=None):
    """Weight entanglement: every variable of the subnet is the leading
    slice of the supernet's of the same name."""
    net, flat = self.standalone(arch)
    size = image_size or self.image_size
    shapes = jax.eval_shape(lambda: net.init(
        jax.random.key(0), jnp.zeros((1, size, size, 3)), flat))
    return leading_slices(variables, shapes)

