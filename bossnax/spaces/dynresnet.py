"""DATA's DynamicResNet space (GAIA-ssl, CVPR 2022): a bottleneck ResNet
with an elastic stem width, four elastic stage widths and four elastic
stage depths, all sharing one maximal supernet (bossnax/nn/resnet_blocks.py;
docs/data.md).

An architecture is one block of nine choice indices:

    [stem, w_1, w_2, w_3, w_4, d_1, d_2, d_3, d_4]  (+ [resolution])

written `stem:w1-w2-w3-w4:d1-d2-d3-d4` (bottleneck widths; a stage outputs
`expansion` x its width), e.g. ResNet-50 is `64:64-128-256-512:3-4-6-3`.
With `resolutions` (GAIA-ssl's elastic input, e.g. 192-256 step 16) a
tenth gene is the input resolution, written `...:3-4-6-3@224`: it sets the
architecture's cost and the size its images are scored at (the evaluator
resizes them per resolution, `input_sizes`); the supernet's weights do not
depend on it, and training runs at `data.image_size`.

The searched values default to GAIA-ssl's: stem 32-64 step 16, widths
from [48, 96, 192, 384] to [80, 160, 320, 640] in steps of [16, 32, 64,
128], depths from [2, 2, 5, 2] to [4, 6, 29, 4] in steps of [1, 2, 2, 1]
(85,293 networks). As in the vit space, a gene's admissible values are its
searched ones and those of the named networks that fit in the supernet
(ResNet-50's stage-3 depth 6 is not searched): training and the searches
draw searched values only; any admissible one can be described, scored,
exported and retrained. `describe --space=dynresnet --arch=resnet50` counts
the plain torchvision ResNet-50 whatever the lists.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bossnax.nn.init import check as check_init
from bossnax.spaces.base import (Arch, Block, Layer, SearchSpace,
                                 leading_slices)

# GAIA-ssl's DynamicResNet search space (its configs' arch settings).
STEM = (32, 48, 64)
WIDTHS = ((48, 64, 80), (96, 128, 160), (192, 256, 320), (384, 512, 640))
DEPTHS = ((2, 3, 4), (2, 4, 6), tuple(range(5, 30, 2)), (2, 3, 4))
# torchvision's networks: (stem, bottleneck widths, depths)
NAMED = {
    'resnet50': (64, (64, 128, 256, 512), (3, 4, 6, 3)),
    'resnet101': (64, (64, 128, 256, 512), (3, 4, 23, 3)),
    'resnet152': (64, (64, 128, 256, 512), (3, 8, 36, 3)),
}


def _out(size, stride):
  """Output side of a conv with PyTorch padding (k - 1) // 2."""
  return -(-size // stride)


def resnet_cost(stem, widths, depths, *, expansion=4, num_classes=1000,
                resolution=224, stem_kind='imagenet'):
  """(multiply-adds of one image, parameters) of a bottleneck ResNet as
  torchvision builds it: convolutions (no bias) and the classifier are
  counted in MAdds; parameters are conv kernels, BN scale and shift, the
  classifier's weight and bias (BN running statistics are buffers)."""
  madds = params = 0

  def conv(cin, cout, k, side):
    nonlocal madds, params
    madds += cin * cout * k * k * side * side
    params += cin * cout * k * k + 2 * cout  # + its BN

  if stem_kind == 'imagenet':
    side = _out(resolution, 2)
    conv(3, stem, 7, side)
    side = _out(side, 2)  # max pool
  else:
    side = resolution
    conv(3, stem, 3, side)
  cin = stem
  for s, (w, d) in enumerate(zip(widths, depths)):
    wide = w * expansion
    for j in range(d):
      stride = 2 if (j == 0 and s > 0) else 1
      out_side = _out(side, stride)
      conv(cin, w, 1, side)
      conv(w, w, 3, out_side)
      conv(w, wide, 1, out_side)
      if j == 0:
        conv(cin, wide, 1, out_side)
      side, cin = out_side, wide
  madds += cin * num_classes
  params += cin * num_classes + num_classes
  return int(madds), int(params)


class DynResNetSpace(SearchSpace):
  name = 'dynresnet'
  path_batching = 'vmap'  # masked: every path has the supernet's shapes

  def __init__(self, stem_widths=STEM, stage_widths=WIDTHS,
               stage_depths=DEPTHS, expansion=4, num_classes=1000,
               image_size=224, stem='imagenet', conv_init='he_fan_out',
               resolutions=()):
    if stem not in ('imagenet', 'cifar'):
      raise ValueError(f"space.stem={stem!r}: use 'imagenet' (7x7/2 conv "
                       "and max pool) or 'cifar' (3x3/1 conv)")
    self.stem_widths = tuple(int(v) for v in stem_widths)
    self.stage_widths = tuple(tuple(int(v) for v in w) for w in stage_widths)
    self.stage_depths = tuple(tuple(int(v) for v in d) for d in stage_depths)
    if len(self.stage_widths) != len(self.stage_depths) or not all(
        self.stage_widths) or not all(self.stage_depths):
      raise ValueError('space.stage_widths and space.stage_depths: one '
                       'non-empty list per stage, as many of each')
    if min(min(d) for d in self.stage_depths) < 1:
      raise ValueError('space.stage_depths: every depth must be >= 1')
    self.expansion, self.num_classes = int(expansion), int(num_classes)
    self.image_size, self.stem = int(image_size), stem
    self.conv_init = check_init(conv_init)
    self.resolutions = tuple(int(r) for r in resolutions)
    if any(r < 8 for r in self.resolutions):
      raise ValueError(f'space.resolutions={self.resolutions}: input sides '
                       'in pixels, e.g. (192, 208, 224, 240, 256)')
    n = len(self.stage_widths)
    searched = [self.stem_widths, *self.stage_widths, *self.stage_depths]
    # Admissible: searched, and the named networks' values that fit.
    admitted = [set(v) for v in searched]
    for stem_w, ws, ds in NAMED.values():
      values = (stem_w, *ws, *ds)
      if len(ws) == n and all(v <= max(s) for v, s in zip(values, searched)):
        for a, v in zip(admitted, values):
          a.add(v)
    if self.resolutions:  # named networks at the space's own size
      searched.append(self.resolutions)
      admitted.append(set(self.resolutions) | {self.image_size})
    self.values_of = tuple(tuple(sorted(a)) for a in admitted)
    names = (['stem'] + [f'w{s + 1}' for s in range(n)] +
             [f'd{s + 1}' for s in range(n)] +
             (['resolution'] if self.resolutions else []))
    self.blocks = (Block('resnet', tuple(
        Layer(nm, v) for nm, v in zip(names, self.values_of))),)
    self._searched = tuple(
        np.asarray([vals.index(v) for v in sorted(set(s))], np.int32)
        for vals, s in zip(self.values_of, searched))

  @property
  def num_stages(self) -> int:
    return len(self.stage_widths)

  def block_output_varies(self, k):
    return True

  # -- genes and strings -------------------------------------------------------
  def values(self, arch: Arch):
    """(stem width, bottleneck widths, depths) of an architecture."""
    v = [vals[i] for vals, i in zip(self.values_of, self.flatten(arch))]
    n = self.num_stages
    return v[0], tuple(v[1:1 + n]), tuple(v[1 + n:1 + 2 * n])

  def resolution(self, arch: Arch) -> int:
    """The input side the architecture runs at: its resolution gene, or
    the space's image size."""
    if not self.resolutions:
      return self.image_size
    return self.values_of[-1][int(self.flatten(arch)[-1])]

  def input_sizes(self, flat):
    """Per architecture of [N, L] flat vectors, the input side its images
    are scored at; None when every architecture runs at one size."""
    if not self.resolutions:
      return None
    table = np.asarray(self.values_of[-1])
    return table[np.asarray(flat, np.int32)[:, -1]]

  def from_values(self, stem, widths, depths, resolution=None) -> Arch:
    values = (stem, *widths, *depths)
    if self.resolutions:
      values += (self.image_size if resolution is None else resolution,)
    elif resolution not in (None, self.image_size):
      raise ValueError(f'dynresnet: resolution {resolution} needs '
                       'space.resolutions (the elastic input option)')
    if len(values) != self.num_layers:
      raise ValueError(f'dynresnet: {self.num_stages} widths and depths '
                       f'expected, got {len(widths)} and {len(depths)}')
    flat = []
    for layer, v in zip(self.layers, values):
      if int(v) not in layer.choices:
        raise ValueError(f'dynresnet: {layer.name}={v} is not admitted by '
                         f'this space ({", ".join(map(str, layer.choices))})')
      flat.append(layer.choices.index(int(v)))
    return self.unflatten(flat)

  def to_string(self, arch: Arch) -> str:
    stem, ws, ds = self.values(arch)
    text = f'{stem}:{"-".join(map(str, ws))}:{"-".join(map(str, ds))}'
    return text + (f'@{self.resolution(arch)}' if self.resolutions else '')

  def from_string(self, text: str) -> Arch:
    try:
      body, _, res = str(text).strip().partition('@')
      stem, ws, ds = body.split(':')
      values = (int(stem), [int(v) for v in ws.split('-')],
                [int(v) for v in ds.split('-')],
                int(res) if res else None)
    except ValueError:
      raise ValueError(f'dynresnet architecture {text!r}: write stem:'
                       'widths:depths[@resolution], e.g. '
                       '64:64-128-256-512:3-4-6-3 (or a name: '
                       f'{", ".join(self.named_architectures())})') from None
    return self.from_values(*values)

  def named_architectures(self):
    out = {'largest': self.largest(), 'smallest': self.smallest()}
    for name, (stem, ws, ds) in NAMED.items():
      try:
        out[name] = self.from_values(stem, ws, ds)
      except ValueError:  # does not fit this supernet
        pass
    return out

  # -- enumeration and sampling --------------------------------------------------
  def count(self) -> int:
    """Architectures with searched values only."""
    return int(np.prod([len(s) for s in self._searched]))

  def is_cartesian(self, k):
    return False  # admissible values outside the searched ones

  def block_paths(self, k, prefix=()):
    raise ValueError(f'the dynresnet space has {self.count():,} '
                     'architectures: too many to list; use a one-shot method '
                     '(--config.method=data) and a whole-architecture search '
                     '(search.strategy=random or evolution)')

  def is_valid(self, arch) -> bool:
    try:
      flat = self.flatten(arch)
    except ValueError:
      return False
    return all(0 <= c < l.num_choices for c, l in zip(flat, self.layers))

  def sample(self, rng: np.random.Generator) -> Arch:
    """Each gene uniform over its searched values."""
    return self.unflatten([s[rng.integers(len(s))] for s in self._searched])

  def mutate(self, arch, rng, prob=0.1, structure_prob=None):
    """Each gene redrawn among its searched values with probability
    `prob`."""
    del structure_prob
    flat = self.flatten(arch).copy()
    for i, s in enumerate(self._searched):
      if rng.random() < prob:
        flat[i] = s[rng.integers(len(s))]
    return self.unflatten(flat)

  def crossover(self, a, b, rng):
    fa, fb = self.flatten(a), self.flatten(b)
    return self.unflatten(np.where(rng.random(fa.shape[0]) < 0.5, fa, fb))

  def largest(self):
    return self.unflatten([s.max() for s in self._searched])

  def smallest(self):
    return self.unflatten([s.min() for s in self._searched])

  def default_arch(self):
    return self.largest()

  # -- cost ----------------------------------------------------------------------
  def _cost(self, stem, ws, ds, resolution=None):
    return resnet_cost(stem, ws, ds, expansion=self.expansion,
                       num_classes=self.num_classes,
                       resolution=resolution or self.image_size,
                       stem_kind=self.stem)

  def flops_params(self, arch, resolution=None, **kw):
    """At the architecture's own resolution unless `resolution` says."""
    del kw
    return self._cost(*self.values(arch), resolution or self.resolution(arch))

  def describe_named(self, text, resolution=None):
    """A torchvision network is counted whatever this space's lists are
    (on ImageNet's 1,000 classes and stem, as published)."""
    if text not in NAMED:
      return self.describe(self.parse(text), resolution=resolution)
    stem, ws, ds = NAMED[text]
    flops, params = resnet_cost(stem, ws, ds, expansion=4, num_classes=1000,
                                resolution=resolution or 224)
    return {'space': self.name, 'name': text,
            'arch': f'{stem}:{"-".join(map(str, ws))}:'
                    f'{"-".join(map(str, ds))}',
            'flops': flops, 'params': params,
            'flops_M': round(flops / 1e6, 3), 'params_M': round(params / 1e6, 4),
            'resolution': resolution or 224}

  # -- networks --------------------------------------------------------------------
  def _network(self, stem, widths, depths, remat=False):
    from bossnax.nn.resnet_blocks import DynamicResNet
    return DynamicResNet(stem_widths=tuple(stem), stage_widths=tuple(widths),
                         stage_depths=tuple(depths),
                         expansion=self.expansion,
                         num_classes=self.num_classes, stem=self.stem,
                         conv_init=self.conv_init, remat=remat)

  def supernet(self, embed_dim=None, remat=False):
    del embed_dim  # the heads read the pooled features
    n = self.num_stages
    return self._network(self.values_of[0], self.values_of[1:1 + n],
                         self.values_of[1 + n:], remat)

  def standalone(self, arch):
    stem, ws, ds = self.values(arch)
    net = self._network((stem,), tuple((w,) for w in ws),
                        tuple((d,) for d in ds))
    return net, np.zeros(self.num_layers, np.int32)

  def slice_variables(self, variables, arch, image_size=None):
    """The standalone network's variables: kernels and the classifier are
    the leading slices of the supernet's; a batch norm keeps the row of
    the path's width (of the stem for the stem's, of the stage
    otherwise); blocks past a stage's depth are dropped (the resolution
    gene owns no weights)."""
    net, flat = self.standalone(arch)
    size = image_size or self.image_size
    like = jax.eval_shape(lambda: net.init(
        jax.random.key(0), jnp.zeros((1, size, size, 3)), flat))
    idx = self.flatten(arch)

    def row(path):
      top = path[0]
      if top.startswith('stem'):
        return int(idx[0])
      return int(idx[int(top[len('stage'):].split('_')[0])])

    def pick_row(path, leaf):  # path: (collection, block0, module, ...)
      names = [k.key for k in path]
      if names[-1] in ('scale', 'bias', 'mean', 'var', 'hits') and (
          names[-2].startswith('bn') or names[-2].endswith('_bn')):
        r = row(names[2:])
        return leaf[r:r + 1]
      return leaf
    rows = jax.tree_util.tree_map_with_path(pick_row, dict(variables))
    return leading_slices(rows, like)
