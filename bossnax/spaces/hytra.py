"""HyTra: the hybrid CNN-transformer fabric of BossNAS (its cost model,
encoding, named architectures and counts; the supernet module is not built
yet, see docs/hytra.md).

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

import numpy as np

from bossnax.spaces.base import Arch, Block, Layer, SearchSpace

# choice id -> (stage index: 0=1/4 .. 3=1/32, block type: 0=ResAtt 1=ResConv)
CHOICES = ((3, 0), (3, 1), (2, 0), (2, 1), (1, 1), (0, 1))
LABELS = ('att@1/32', 'conv@1/32', 'att@1/16', 'conv@1/16', 'conv@1/8',
          'conv@1/4')
_ID = {c: i for i, c in enumerate(CHOICES)}
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


def hytra_madds_params(stages, resolution=224, last_stride=2,
                       num_classes=1000):
  """(multiply-adds, params) by the official counter's conventions.

  Per block: entry 1x1 at the input resolution, the 3x3 depthwise conv
  (position encoding, does the stride), exit 1x1, a projection shortcut when
  the width changes; ResConv adds its 3x3 conv, ResAtt its QKV projections
  and the two attention matrix products. Stem 7x7 conv; an empty stage counts
  one 3x3 conv at its bottleneck width; the classifier; no BN, no pooling.
  """
  r = resolution
  res_in = (r // 4, r // 4, r // 8, r // 16)
  strides = (1, 2, 2, last_stride)
  madds = 7 * 7 * 3 * 64 * (r // 2) ** 2
  params = 7 * 7 * 3 * 64
  for s, blocks in enumerate(stages):
    b, out = BOTTLENECK[s], OUT_CH[s]
    if not blocks:
      madds += (res_in[s] // strides[s]) ** 2 * 9 * b * b
      params += 9 * b * b
    for j, kind in enumerate(blocks):
      cin = IN_CH[s] if j == 0 else out
      stride = strides[s] if j == 0 else 1
      res = res_in[s] if j == 0 else res_in[s] // strides[s]
      R = res // stride
      madds += cin * b * res ** 2 + R * R * 9 * b + b * out * R * R
      params += cin * b + 9 * b + b * out
      if cin != out:
        madds += cin * out * R * R
        params += cin * out
      if kind == 1:  # ResConv: 3x3 conv at the bottleneck
        madds += R * R * 9 * b * b
        params += 9 * b * b
      else:  # ResAtt: QKV + QK^T + AV over R^2 tokens
        madds += 3 * b * b * R * R + 2 * b * R ** 4
        params += 3 * b * b
  madds += OUT_CH[-1] * num_classes
  params += OUT_CH[-1] * num_classes
  return madds, params


class HyTraSpace(SearchSpace):

  path_batching = 'map'

  def __init__(self, num_classes=1000, restricted=True):
    self.name = 'hytra'
    self.num_classes = num_classes
    self.restricted = restricted
    self.blocks = tuple(
        Block(f'block{k}', tuple(Layer(f'l{4 * k + i}', LABELS)
                                 for i in range(4))) for k in range(4))

  # -- validity and counting ---------------------------------------------------
  def _allowed(self, layer, stage, prev_stage):
    if prev_stage is not None and stage not in (prev_stage, prev_stage + 1):
      return False  # keep the resolution or halve it once
    if self.restricted and stage not in BLOCK_STAGES[layer // 4]:
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
      if i == 4:
        rows.append(path)
        return
      for cid, (stage, _) in enumerate(CHOICES):
        if self._allowed(4 * k + i, stage, prev_stage):
          rec(i + 1, stage, path + [cid])
    rec(0, prev, [])
    return np.asarray(rows, np.int32).reshape(-1, 4)

  @functools.lru_cache(maxsize=None)
  def count(self) -> int:
    """Architectures of the space, by dynamic programming over layers."""
    ways = {None: 1}
    for layer in range(16):
      new = {}
      for prev, n in ways.items():
        for stage, _ in CHOICES:
          if self._allowed(layer, stage, prev):
            new[stage] = new.get(stage, 0) + n
      ways = new
    return sum(ways.values())

  # -- encodings -----------------------------------------------------------------
  def to_stages(self, arch: Arch) -> list[list[int]]:
    stages = [[], [], [], []]
    for cid in self.flatten(arch):
      stage, kind = CHOICES[int(cid)]
      stages[stage].append(kind)
    return stages

  def from_stages(self, stages) -> Arch:
    if len(stages) != 4 or sum(len(s) for s in stages) != 16:
      raise ValueError(f'hytra architecture {stages}: give 4 stage lists '
                       'with 16 block types in all (0=ResAtt, 1=ResConv)')
    ids = []
    for s, kinds in enumerate(stages):
      for kind in kinds:
        if (s, kind) not in _ID:
          raise ValueError(f'hytra architecture {stages}: ResAtt (0) only '
                           'at 1/16 and 1/32 (the last two stages)')
        ids.append(_ID[(s, kind)])
    return self.unflatten(ids)

  def named_architectures(self):
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
  def flops_params(self, arch, resolution=224, last_stride=2, **kw):
    del kw
    return hytra_madds_params(self.to_stages(arch), resolution, last_stride,
                              self.num_classes)

  def describe_named(self, text, resolution=224):
    arch = self.parse(text)
    last_stride = 1 if text in NO_LAST_DOWNSAMPLE else 2
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
    stages = [CHOICES[int(c)][0] for c in ids]
    kinds = [CHOICES[int(c)][1] for c in ids]
    fig, ax = plt.subplots(figsize=(8, 2.6))
    for x in range(16):
      for y in range(4):
        ax.plot(x, y, 'o', color='0.85', ms=10, zorder=1)
    ax.plot(range(16), stages, '-', color='0.4', zorder=2)
    colors = {1: '#4477aa', 0: '#ee6677'}
    for kind, label in ((1, 'ResConv'), (0, 'ResAtt')):
      xs = [i for i in range(16) if kinds[i] == kind]
      ax.scatter(xs, [stages[i] for i in xs], s=110, color=colors[kind],
                 label=label, zorder=3)
    for b in (3.5, 7.5, 11.5):
      ax.axvline(b, color='0.7', ls='--', lw=0.8)
    ax.set_yticks(range(4), ['1/4', '1/8', '1/16', '1/32'])
    ax.set_ylim(3.5, -0.5)
    ax.set_xticks(range(16), [str(i + 1) for i in range(16)])
    ax.set_xlabel('layer')
    ax.legend(loc='upper right', fontsize=8, ncol=2)
    ax.set_title(self.to_string(arch), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

  def supernet(self, embed_dim, remat=False):
    raise NotImplementedError(
        'the HyTra supernet is not built yet (docs/hytra.md): describe, '
        'counts and pictures work; training and search run on nats')

  def param_block(self, path):
    raise NotImplementedError('the HyTra supernet is not built yet')
