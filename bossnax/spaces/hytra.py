"""HyTra: the hybrid CNN-transformer fabric of BossNAS: encoding, named
architectures, counts, cost model, picture, and the supernet / standalone
networks (bossnax/nn/hytra_blocks.py); see docs/hytra.md.

16 layers in 4 blocks of 4. Every layer is ResConv or ResAtt, and keeps the
resolution of the layer before it or halves it (1/4 ... 1/32); ResAtt only at
1/16 and 1/32. A layer's choice id (the official supernet's):

    0 ResAtt @1/32   1 ResConv @1/32   2 ResAtt @1/16   3 ResConv @1/16
    4 ResConv @1/8   5 ResConv @1/4

The official encoding is one list per ResNet stage (1/4, 1/8, 1/16, 1/32) of
block types, 0 = ResAtt, 1 = ResConv: the stage lengths place the
down-sampling.
"""

from __future__ import annotations

import ast
import functools

import jax
import jax.numpy as jnp
import numpy as np

from bossnax.nn.hytra_blocks import HyTraNetwork
from bossnax.spaces.base import Arch, Block, Layer, SearchSpace, take_like

# choice id -> (stage index: 0=1/4 .. 3=1/32, block type: 0=ResAtt 1=ResConv)
CHOICES = ((3, 0), (3, 1), (2, 0), (2, 1), (1, 1), (0, 1))
LABELS = ('att@1/32', 'conv@1/32', 'att@1/16', 'conv@1/16', 'conv@1/8',
          'conv@1/4')
_ID = {c: i for i, c in enumerate(CHOICES)}
_STAGE = np.asarray([c[0] for c in CHOICES])
_KIND = np.asarray([c[1] for c in CHOICES])
# The restriction of the search: stages each block may use.
BLOCK_STAGES = ((0, 1, 2, 3), (1, 2, 3), (2, 3), (2, 3))

# Per stage, as the official counter has them.
IN_CH = (64, 256, 512, 1024)
OUT_CH = (256, 512, 1024, 2048)
BOTTLENECK = (64, 128, 256, 512)

NAMED = {
    'ResNet50-T': [[1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1, 1, 1], [1, 1, 1]],
    'BoT50-T': [[1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1, 1, 1], [0, 0, 0]],
    'ViT-T/16': [[], [], [0] * 16, []],
    'ViT-T/32': [[], [], [], [0] * 16],
    'Random-T': [[], [], [0, 1, 1, 1, 0, 0, 1, 0, 1, 1, 0], [0, 1, 0, 1, 1]],
    'DNA-T': [[1], [1, 1, 1], [1, 0, 1, 1, 1, 1, 0, 1], [0, 1, 1, 1]],
    'UnNAS-T': [[], [1], [1, 1], [1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 1, 1, 0]],
    'BossNet-T0': [[1], [1], [1, 1, 1, 0, 1], [0, 0, 0, 1, 0, 0, 0, 0, 0]],
}
# T1 is T0 without the last stage's down-sampling (the official `use_s1`).
NO_LAST_DOWNSAMPLE = {'BossNet-T1': 'BossNet-T0'}


@functools.lru_cache(maxsize=None)
def hytra_cost_terms(resolution=224, last_stride=2, num_classes=1000,
                     base_width=64, stem='imagenet'):
  """The official counter's (multiply-adds, params) as a sum of terms:
  (fixed, empty, layer), where fixed is the stem and the classifier,
  empty[s] an empty stage s (one 3x3 conv at its bottleneck width) and
  layer[s][first][kind] a block of `kind` (0 ResAtt, 1 ResConv) at stage s,
  first of its stage (it takes the stage's input width and does the
  stride) or not.

  Per block: entry 1x1 at the input resolution, the 3x3 depthwise conv
  (position encoding, does the stride), exit 1x1, a projection shortcut when
  the width changes; ResConv adds its 3x3 conv, ResAtt its QKV projections
  and the two attention matrix products. Stem 7x7 conv; the classifier; no
  BN, no pooling. stem='cifar' (3x3 stride-1 conv, first scale at full
  resolution) counts that stem and those resolutions instead.
  """
  f = base_width / 64  # width multiplier (1 for the paper's networks)
  in_ch = [int(c * f) for c in IN_CH]
  out_ch = [int(c * f) for c in OUT_CH]
  if stem == 'cifar':
    r = 4 * resolution  # the first scale sits at the input resolution
    fixed = [3 * 3 * 3 * in_ch[0] * resolution ** 2, 3 * 3 * 3 * in_ch[0]]
  else:
    r = resolution
    fixed = [7 * 7 * 3 * in_ch[0] * (r // 2) ** 2, 7 * 7 * 3 * in_ch[0]]
  fixed[0] += out_ch[-1] * num_classes
  fixed[1] += out_ch[-1] * num_classes
  res_in = (r // 4, r // 4, r // 8, r // 16)
  strides = (1, 2, 2, last_stride)
  empty, layer = [], []
  for s in range(4):
    b, out = int(BOTTLENECK[s] * f), out_ch[s]
    empty.append(((res_in[s] // strides[s]) ** 2 * 9 * b * b, 9 * b * b))
    per_first = []
    for first in (False, True):
      cin = in_ch[s] if first else out
      stride = strides[s] if first else 1
      res = res_in[s] if first else res_in[s] // strides[s]
      R = res // stride
      madds = cin * b * res ** 2 + R * R * 9 * b + b * out * R * R
      params = cin * b + 9 * b + b * out
      if cin != out:
        madds += cin * out * R * R
        params += cin * out
      att = (madds + 3 * b * b * R * R + 2 * b * R ** 4, params + 3 * b * b)
      conv = (madds + R * R * 9 * b * b, params + 9 * b * b)
      per_first.append((att, conv))
    layer.append(tuple(per_first))
  return tuple(fixed), tuple(empty), tuple(layer)


def hytra_madds_params(stages, resolution=224, last_stride=2,
                       num_classes=1000, base_width=64, stem='imagenet'):
  """(multiply-adds, params) of the network with these stage lists, by the
  official counter's conventions (`hytra_cost_terms`)."""
  fixed, empty, layer = hytra_cost_terms(resolution, last_stride, num_classes,
                                         base_width, stem)
  madds, params = fixed
  for s, blocks in enumerate(stages):
    terms = [empty[s]] if not blocks else [
        layer[s][j == 0][kind] for j, kind in enumerate(blocks)]
    for m, p in terms:
      madds, params = madds + m, params + p
  return madds, params


class HyTraSpace(SearchSpace):
  """The fabric. `base_width` scales every width (64: the paper's; 8 runs on
  a CPU); `stem='cifar'` keeps 32x32 images at 32x32 for the first scale;
  `last_stride=1` builds T1-style networks (no down-sampling into 1/32);
  `block_ends` (a stage 0..3 per block, e.g. (1, 2, 2, 3)) makes every
  block end at that scale, so blocks no longer depend on each other (what
  method=dna needs: each block reads and regresses a teacher's maps)."""

  path_batching = 'map'  # paths switch branches: run them one by one

  def __init__(self, num_classes=1000, restricted=True, base_width=64,
               heads=(4, 8), stem='imagenet', embed_dim=None, last_stride=2,
               depth=4, block_ends=()):
    if stem not in ('imagenet', 'cifar'):
      raise ValueError(f"hytra stem {stem!r}: use 'imagenet' or 'cifar'")
    if (4 * base_width) % heads[0] or (8 * base_width) % heads[1] or \
        last_stride not in (1, 2):
      raise ValueError(f'hytra: 4x and 8x base_width {base_width} must '
                       f'split into heads {heads}; last_stride is 1 or 2')
    self.name = 'hytra'
    self.num_classes = num_classes
    self.restricted = restricted
    self.base_width = base_width
    self.heads = tuple(heads)
    self.stem = stem
    self.embed_dim = embed_dim or 32 * base_width  # the 1/32 width
    self.last_stride = last_stride
    if depth < 1:
      raise ValueError(f'hytra depth {depth}: layers per block, at least 1')
    self.depth = depth  # layers per block: 4 in the paper; less for tests
    self.block_ends = tuple(int(e) for e in block_ends)
    if self.block_ends and (len(self.block_ends) != 4 or any(
        not 0 <= e <= 3 for e in self.block_ends)):
      raise ValueError(f'hytra block_ends {block_ends}: give a stage 0..3 '
                       '(1/4 .. 1/32) for each of the 4 blocks, or ()')
    self.blocks = tuple(
        Block(f'block{k}', tuple(Layer(f'l{depth * k + i}', LABELS)
                                 for i in range(depth))) for k in range(4))
    if self.block_ends:
      self.count()  # fails in one line if no architecture ends there

  # -- validity and counting ---------------------------------------------------
  def _allowed(self, layer, stage, prev_stage):
    if prev_stage is not None and stage not in (prev_stage, prev_stage + 1):
      return False  # keep the resolution or halve it once
    if self.restricted and stage not in BLOCK_STAGES[layer // self.depth]:
      return False
    if self.block_ends and layer % self.depth == self.depth - 1 and \
        stage != self.block_ends[layer // self.depth]:
      return False
    return True

  def is_cartesian(self, k):
    return False

  def block_paths(self, k, prefix=()):
    prev = None
    if k > 0:
      last = np.asarray(prefix[k - 1])[-1]
      prev = CHOICES[int(last)][0]
    rows = []

    def rec(i, prev_stage, path):
      if i == self.depth:
        rows.append(path)
        return
      for cid, (stage, _) in enumerate(CHOICES):
        if self._allowed(self.depth * k + i, stage, prev_stage):
          rec(i + 1, stage, path + [cid])
    rec(0, prev, [])
    return np.asarray(rows, np.int32).reshape(-1, self.depth)

  @functools.lru_cache(maxsize=None)
  def count(self) -> int:
    """Architectures of the space, by dynamic programming over layers."""
    ways = {None: 1}
    for layer in range(self.num_layers):
      new = {}
      for prev, n in ways.items():
        for stage, _ in CHOICES:
          if self._allowed(layer, stage, prev):
            new[stage] = new.get(stage, 0) + n
      ways = new
    if not ways:
      raise ValueError(f'hytra block_ends {self.block_ends}: no architecture '
                       'of the space ends its blocks there (a layer keeps '
                       'or halves the resolution; restricted blocks: '
                       f'{BLOCK_STAGES})')
    return sum(ways.values())

  def block_end_stages(self, arch: Arch) -> tuple[int, ...]:
    """The stage (0 = 1/4 .. 3 = 1/32) each block of `arch` ends at."""
    flat = self.flatten(arch)
    return tuple(CHOICES[int(flat[self.depth * k + self.depth - 1])][0]
                 for k in range(4))

  # -- encodings -----------------------------------------------------------------
  def to_stages(self, arch: Arch) -> list[list[int]]:
    stages = [[], [], [], []]
    for cid in self.flatten(arch):
      stage, kind = CHOICES[int(cid)]
      stages[stage].append(kind)
    return stages

  def from_stages(self, stages) -> Arch:
    n = self.num_layers
    if len(stages) != 4 or sum(len(s) for s in stages) != n:
      raise ValueError(f'hytra architecture {stages}: give 4 stage lists '
                       f'with {n} block types in all (0=ResAtt, 1=ResConv)')
    ids = []
    for s, kinds in enumerate(stages):
      for kind in kinds:
        if (s, kind) not in _ID:
          raise ValueError(f'hytra architecture {stages}: ResAtt (0) only '
                           'at 1/16 and 1/32 (the last two stages)')
        ids.append(_ID[(s, kind)])
    return self.unflatten(ids)

  def named_architectures(self):
    if self.depth != 4:  # the paper's networks have 16 layers
      return {}
    return {n: self.from_stages(s) for n, s in NAMED.items()}

  def parse(self, text):
    name = NO_LAST_DOWNSAMPLE.get(text, text)
    return super().parse(name)

  def to_string(self, arch):
    return str(self.to_stages(arch)).replace(' ', '')

  def from_string(self, text):
    try:
      stages = ast.literal_eval(str(text))
    except (ValueError, SyntaxError):
      raise ValueError(f'hytra architecture {text!r}: a name '
                       f'({", ".join(list(NAMED) + list(NO_LAST_DOWNSAMPLE))})'
                       ' or stage lists like [[1],[1],[1,1,1,0,1],[0,...]]'
                       ) from None
    return self.from_stages(stages)

  # -- cost ------------------------------------------------------------------------
  @property
  def resolution(self):
    """The input side the space is built for (224 ImageNet, 32 CIFAR)."""
    return 32 if self.stem == 'cifar' else 224

  def flops_params(self, arch, resolution=None, last_stride=None, **kw):
    del kw
    return hytra_madds_params(self.to_stages(arch),
                              resolution or self.resolution,
                              last_stride or self.last_stride,
                              self.num_classes, self.base_width, self.stem)

  def _terms(self):
    return hytra_cost_terms(self.resolution, self.last_stride,
                            self.num_classes, self.base_width, self.stem)

  def _layer_terms(self, paths, before):
    """Layer terms of `paths` [N, n] (int64 [N, 2]) after a layer at stage
    `before` (-1: none); a layer is first of its stage when the one before
    it is at another stage."""
    _, _, layer = (np.asarray(t, np.int64) for t in self._terms())
    stage, kind = _STAGE[paths], _KIND[paths]
    prev = np.concatenate([np.full((len(paths), 1), before), stage[:, :-1]],
                          1)
    return layer[stage, (stage != prev).astype(int), kind].sum(1)

  def _empty_stages(self, lo, hi):
    """int64 [N, 2]: the empty stages s with lo <= s < hi ([N] each)."""
    _, empty, _ = (np.asarray(t, np.int64) for t in self._terms())
    s = np.arange(4)
    inside = (s >= np.asarray(lo)[:, None]) & (s < np.asarray(hi)[:, None])
    return (inside[..., None] * empty).sum(1)

  def costs(self, flat):
    """Vectorised hytra_madds_params: the layers, the stages before the
    first layer and after the last (empty: resolution only ever halves)."""
    flat = np.asarray(flat, np.int64).reshape(-1, self.num_layers)
    stage = _STAGE[flat]
    n = len(flat)
    return (np.asarray(self._terms()[0], np.int64) +
            self._layer_terms(flat, -1) +
            self._empty_stages(np.zeros(n, int), stage[:, 0]) +
            self._empty_stages(stage[:, -1] + 1, np.full(n, 4)))

  def block_costs(self, k, paths, state=None):
    """`state`: the stage of the last layer before the block (None before
    block 0); block 0 also pays for the stages before its first layer."""
    paths = np.asarray(paths, np.int64).reshape(-1, self.depth)
    stage = _STAGE[paths]
    out = self._layer_terms(paths, -1 if state is None else state)
    if state is None:
      out = out + self._empty_stages(np.zeros(len(paths), int), stage[:, 0])
    return out, [int(v) for v in stage[:, -1]]

  def end_cost(self, state=None):
    return (np.asarray(self._terms()[0], np.int64) +
            self._empty_stages([int(state) + 1], [4])[0])

  def describe_named(self, text, resolution=None):
    resolution = resolution or self.resolution
    arch = self.parse(text)
    last_stride = 1 if text in NO_LAST_DOWNSAMPLE else self.last_stride
    out = self.describe(arch, resolution=resolution, last_stride=last_stride)
    out['name'] = text if text in NAMED or text in NO_LAST_DOWNSAMPLE else None
    out['resolution'] = resolution
    out['flops_G'] = round(out['flops'] / 1e9, 2)
    return out

  def draw(self, arch, path):
    """The path on the fabric: layers across, scales down (paper Fig. 5)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    ids = self.flatten(arch)
    n, d = len(ids), self.depth
    stages = [CHOICES[int(c)][0] for c in ids]
    kinds = [CHOICES[int(c)][1] for c in ids]
    fig, ax = plt.subplots(figsize=(8, 2.6))
    for x in range(n):
      for y in range(4):
        ax.plot(x, y, 'o', color='0.85', ms=10, zorder=1)
    ax.plot(range(n), stages, '-', color='0.4', zorder=2)
    colors = {1: '#4477aa', 0: '#ee6677'}
    for kind, label in ((1, 'ResConv'), (0, 'ResAtt')):
      xs = [i for i in range(n) if kinds[i] == kind]
      ax.scatter(xs, [stages[i] for i in xs], s=110, color=colors[kind],
                 label=label, zorder=3)
    for b in (d - 0.5, 2 * d - 0.5, 3 * d - 0.5):
      ax.axvline(b, color='0.7', ls='--', lw=0.8)
    ax.set_yticks(range(4), ['1/4', '1/8', '1/16', '1/32'])
    ax.set_ylim(3.5, -0.5)
    ax.set_xticks(range(n), [str(i + 1) for i in range(n)])
    ax.set_xlabel('layer')
    ax.legend(loc='upper right', fontsize=8, ncol=2)
    ax.set_title(self.to_string(arch), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

  # -- networks ----------------------------------------------------------------------
  def _network(self, embed_dim=None, fixed=None, remat=False):
    b = [self.base_width * 2 ** s for s in range(4)]
    return HyTraNetwork(
        choices=CHOICES,
        block_stages=BLOCK_STAGES if self.restricted else ((0, 1, 2, 3),) * 4,
        bottlenecks=tuple(b), heads=(0, 0) + self.heads,
        stem_width=self.base_width, stem=self.stem,
        last_stride=self.last_stride, embed_dim=embed_dim or self.embed_dim,
        num_classes=self.num_classes, fixed=fixed, remat=remat,
        depth=self.depth)

  def supernet(self, embed_dim=None, remat=False):
    return self._network(embed_dim, remat=remat)

  def standalone(self, arch: Arch):
    """The plain network of one path (its layers at their static scales)
    and the arch vector it takes."""
    flat = self.flatten(arch)
    return self._network(fixed=tuple(int(c) for c in flat)), flat

  def slice_variables(self, variables, arch: Arch, image_size=32):
    """Supernet variables -> the standalone network's: the standalone's
    variables are a subtree of the supernet's (same names), so take it."""
    net, flat = self.standalone(arch)
    x = jnp.zeros((1, image_size, image_size, 3))
    shapes = jax.eval_shape(lambda: net.init(jax.random.key(0), x, flat))
    return take_like(variables, shapes)

