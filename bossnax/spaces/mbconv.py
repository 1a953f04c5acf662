"""The MBConv search space: BossNAS's mobile space (and DNA's, SPOS's, from
the same layout tables, spaces/mbconv_layouts.py).

BossNAS's layout: 18 searched layers in 5 blocks (one block per stage,
2 / 4 / 4 / 4 / 4 layers, 24 / 40 / 80 / 112 / 192 channels), 4 candidates
per layer (0 = MB6 3x3, 1 = MB6 5x5, 2 = MB3 3x3, 3 = MB3 5x5), so
4^18 = 6.9e10 architectures and 16 / 256 / 256 / 256 / 256 paths per block.
An architecture string has a digit per layer, blocks separated by '|':
`11|1111|1101|1011|1101`.

Named fixed networks of other layouts (`efficientnet_b0`, `mobilenet_v2`)
are described (counted) with `describe_named`.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from bossnax.spaces import mbconv_layouts as L
from bossnax.spaces.base import Arch, Block, Layer, SearchSpace, take_like

# counted by `describe --arch=NAME`, not searchable layouts
FIXED_NETWORKS = ('efficientnet_b0', 'mobilenet_v2', 'dna_a', 'dna_b', 'dna_c',
                  'dna_d')


class MBConvSpace(SearchSpace):
  name = 'mbconv'
  path_batching = 'map'  # candidates differ in shape: a switch per layer

  def __init__(self, layout='bossnas', num_classes=1000, cifar_stem=False,
               stage_layers=(), stage_widths=()):
    """`stage_layers` / `stage_widths` (one per searched stage, () = the
    layout's) shrink a layout for tests and CPU presets."""
    if layout not in L.LAYOUTS or layout in FIXED_NETWORKS:
      searchable = [n for n in L.LAYOUTS if n not in FIXED_NETWORKS]
      raise ValueError(f'mbconv layout {layout!r}: use one of {searchable}')
    self.layout, self.num_classes = layout, num_classes
    self.cifar_stem = bool(cifar_stem)
    self.stage_layers = tuple(stage_layers)
    self.stage_widths = tuple(stage_widths)
    lay = L.LAYOUTS[layout]
    for name, v in (('stage_layers', self.stage_layers),
                    ('stage_widths', self.stage_widths)):
      if v and len(v) != len(lay.stages):
        raise ValueError(f'space.{name} has {len(v)} entries: the {layout} '
                         f'layout has {len(lay.stages)} searched stages')
    stages = tuple(dataclasses.replace(
        st, layers=self.stage_layers[s] if self.stage_layers else st.layers,
        width=self.stage_widths[s] if self.stage_widths else st.width)
        for s, st in enumerate(lay.stages))
    self.lay = dataclasses.replace(lay, stages=stages)
    # Identity (SPOS's skip, listed last) only where the shape is kept: a
    # stage's first layer changes width or resolution, and a skip cannot,
    # so it has one choice fewer.
    shape_kept = [stride == 1 and cin == cout
                  for _, _, cin, cout, stride in L.searched_layers(self.lay)]
    layers = iter(shape_kept)
    self.blocks = tuple(
        Block(f'stage{s}', tuple(Layer(f's{s}l{i}', tuple(
            op.label if op != L.IDENTITY else 'identity' for op in st.ops
            if op != L.IDENTITY or kept))
            for i, kept in zip(range(st.layers), layers)))
        for s, st in enumerate(self.lay.stages))

  # -- strings ----------------------------------------------------------------
  def to_string(self, arch: Arch) -> str:
    return '|'.join(''.join(str(int(c)) for c in a) for a in arch)

  def from_string(self, text: str) -> Arch:
    parts = text.strip().split('|')
    sizes = [b.num_layers for b in self.blocks]
    n = max(l.num_choices for l in self.layers)
    if (len(parts) != len(sizes) or any(len(p) != s for p, s in zip(
        parts, sizes)) or not all(c.isdigit() and int(c) < n
                                  for c in ''.join(parts))):
      example = '|'.join('1' * s for s in sizes)
      raise ValueError(f'mbconv ({self.layout}) architecture {text!r}: one '
                       f'digit 0-{n - 1} per layer, blocks of {sizes} layers '
                       f"separated by '|', e.g. {example}")
    return tuple(np.array([int(c) for c in p], np.int32) for p in parts)

  def parse(self, text):
    if text in FIXED_NETWORKS:  # counted by describe_named; any valid path
      return self.default_arch()
    return super().parse(text)

  def benchmark(self, path):
    """(architectures, accuracies) of a ranking benchmark file such as
    ../shared/benchmarks/mbconv_23_archs_imagenet.json ({'architectures':
    [{'encoding': [[op, ...] per block], 'imagenet_top1': ...}]})."""
    import json
    try:
      with open(path) as f:
        rows = json.load(f)['architectures']
      archs = [tuple(np.asarray(b, np.int32) for b in r['encoding'])
               for r in rows]
      acc = np.array([r.get('imagenet_top1', np.nan) for r in rows], float)
      for a in archs:
        self.flatten(a)
        if not self.is_valid(a):
          raise ValueError(f'{self.to_string(a)} is not in this space')
    except (OSError, KeyError, TypeError, ValueError) as e:
      raise ValueError(f'benchmark {path}: {e} (expected {{"architectures": '
                       '[{"encoding": [[op, ...], ...], "imagenet_top1": '
                       'acc}, ...]}} of this layout)') from None
    return archs, acc

  # -- cost ---------------------------------------------------------------------
  def ops(self, arch: Arch):
    flat = self.flatten(arch)
    return [self.lay.stages[s].ops[int(c)]
            for (s, *_), c in zip(L.searched_layers(self.lay), flat)]

  @property
  def resolution(self) -> int:
    """The input side the counts are at by default."""
    return 32 if self.cifar_stem else 224

  def flops_params(self, arch: Arch, resolution=None, **kw):
    res = resolution or self.resolution
    return L.network_cost(self.lay, self.ops(arch), res, self.num_classes,
                          self.cifar_stem)

  # Every searched layer's in/out width, stride and resolution are fixed by
  # the layout, so the cost is a constant plus one term per layer's choice.
  @functools.cached_property
  def _layer_costs(self):
    """(int64 [2] cost of the network with every layer's first op,
    int64 [L, C, 2]: what choice c of layer l adds to it)."""
    base_ops = [self.lay.stages[s].ops[0]
                for s, *_ in L.searched_layers(self.lay)]
    cost = lambda ops: np.asarray(L.network_cost(
        self.lay, ops, self.resolution, self.num_classes, self.cifar_stem),
        np.int64)
    base = cost(base_ops)
    C = max(len(layer.choices) for layer in self.layers)
    table = np.zeros((len(base_ops), C, 2), np.int64)
    valid = np.zeros((len(base_ops), C), bool)
    valid[:, 0] = True
    for i, (s, *_) in enumerate(L.searched_layers(self.lay)):
      for c, op in enumerate(self.lay.stages[s].ops[1:], start=1):
        try:
          table[i, c] = cost(base_ops[:i] + [op] + base_ops[i + 1:]) - base
          valid[i, c] = True
        except ValueError:  # identity where the shape changes (SPOS)
          pass
    return base, table, valid

  def _choice_costs(self, rows, flat):
    _, table, valid = self._layer_costs
    if not valid[rows, flat].all():
      bad = ''.join(str(int(c)) for c in flat[~valid[rows, flat].all(1)][0])
      raise ValueError(f'mbconv ({self.layout}) layers {bad}: identity where '
                       'the shape changes')
    return table[rows, flat].sum(1)

  def costs(self, flat):
    flat = np.asarray(flat, np.int64).reshape(-1, self.num_layers)
    return self._layer_costs[0] + self._choice_costs(
        np.arange(self.num_layers), flat)

  def block_costs(self, k, paths, state=None):
    sl = self.block_slice(k)
    paths = np.asarray(paths, np.int64).reshape(-1, sl.stop - sl.start)
    return (self._choice_costs(np.arange(sl.start, sl.stop), paths),
            [None] * len(paths))

  def end_cost(self, state=None):
    return self._layer_costs[0].copy()

  def describe_named(self, text, resolution=None):
    if text not in FIXED_NETWORKS:
      return self.describe(self.parse(text), resolution=resolution)
    lay = L.LAYOUTS[text]
    flops, params = L.network_cost(lay, L.fixed_ops(lay), resolution or 224,
                                   self.num_classes)
    return {'space': self.name, 'arch': text, 'flops': flops,
            'params': params, 'flops_M': round(flops / 1e6, 3),
            'params_M': round(params / 1e6, 4)}

  # -- networks ---------------------------------------------------------------------
  def _network(self, fixed=None, remat=False):
    from bossnax.nn.mbconv_blocks import MBConvNetwork
    return MBConvNetwork(layout=self.lay, num_classes=self.num_classes,
                         cifar_stem=self.cifar_stem, fixed=fixed, remat=remat)

  def supernet(self, embed_dim=None, remat=False):
    del embed_dim  # a block's neck takes its pooled output as it is
    return self._network(remat=remat)

  def standalone(self, arch: Arch):
    flat = self.flatten(arch)
    return self._network(fixed=tuple(int(c) for c in flat)), flat

  def slice_variables(self, variables, arch: Arch, image_size=None):
    """The standalone network's variables are a subtree of the supernet's
    (same names): take it."""
    net, flat = self.standalone(arch)
    size = image_size or (32 if self.cifar_stem else 224)
    x = jnp.zeros((1, size, size, 3))
    shapes = jax.eval_shape(lambda: net.init(jax.random.key(0), x, flat))
    return take_like(variables, shapes)
