"""Mobile (MBConv) layouts as data: what the MBConv space, DNA's space,
the SPOS/ProxylessNAS space of GreedyNAS and fixed networks such as
EfficientNet-B0 and MobileNetV2 are made of, and their exact cost.

A layout is a stem, a fixed first block, searched (or fixed) stages and a
head. A stage has an output width, the stride of its first layer, a number
of layers and the candidate operations of each layer. An operation is an
inverted residual `Op(kernel, expansion)` or `IDENTITY` (a skipped layer).

Costs follow the usual convention of the papers' MAdds: multiply-adds of
convolutions and linear layers (squeeze-excitation's included), nothing for
batch norm, activations, pooling or additions; parameters count every
weight, bias and batch-norm scale and offset (not the running statistics).
"""

from __future__ import annotations

import dataclasses
import math


def make_divisible(v, divisor=8, min_value=None):
  """The channel rounding of MobileNetV2 / EfficientNet: to the nearest
  multiple of `divisor`, never below 90% of v."""
  min_value = min_value or divisor
  new = max(min_value, int(v + divisor / 2) // divisor * divisor)
  if new < 0.9 * v:
    new += divisor
  return new


@dataclasses.dataclass(frozen=True)
class Op:
  kernel: int
  expansion: int

  @property
  def label(self):
    return f'MB{self.expansion} {self.kernel}x{self.kernel}'


IDENTITY = Op(0, 0)  # the skipped layer of SPOS-style spaces


@dataclasses.dataclass(frozen=True)
class Stage:
  width: int  # output channels
  stride: int  # of the first layer
  layers: int
  ops: tuple  # candidate Ops of every layer of the stage


@dataclasses.dataclass(frozen=True)
class Layout:
  name: str
  stem: int  # conv 3x3 stride 2 (stride 1 with cifar_stem)
  first: tuple  # (width, expansion) of the fixed first block: expansion 1 is
  # depthwise-separable (depthwise 3x3 [+ SE], pointwise), else MBConv k3
  stages: tuple  # searched stages
  tail: tuple  # fixed stages after the searched ones, e.g. MB6 k3 to 320
  head: int  # conv 1x1 width before pooling (0: none)
  act: str = 'silu'  # 'silu' | 'relu6' | 'relu'
  se: float = 0.25  # squeeze-excitation ratio of the layer input; 0: none
  # 'shortcut': every layer has a residual (identity, or avg-pool 2x2 + 1x1
  # conv + BN when the shape changes: BossNAS); 'identity': only when the
  # stride is 1 and the widths agree (MobileNetV2, EfficientNet, DNA)
  residual: str = 'shortcut'
  divisor: int = 8  # hidden widths = make_divisible(in x expansion, divisor)
  # True (EfficientNet): the SE reduction width is int(in x ratio), else
  # make_divisible(in x ratio)
  se_floor: bool = True


# -- candidate lists ----------------------------------------------------------
BOSSNAS_OPS = (Op(3, 6), Op(5, 6), Op(3, 3), Op(5, 3))  # ids 0..3 (the paper's)
DNA_OPS = (Op(3, 3), Op(3, 6), Op(5, 3), Op(5, 6), Op(7, 3), Op(7, 6))
SPOS_OPS = (Op(3, 3), Op(3, 6), Op(5, 3), Op(5, 6), Op(7, 3), Op(7, 6),
            IDENTITY)


def _stages(widths, strides, layers, ops):
  return tuple(Stage(w, s, n, ops) for w, s, n in zip(widths, strides, layers))


LAYOUTS = {
    # BossNAS's MBConv space (EfficientNet-B0-like): 18 searched layers in 5
    # blocks, every layer with a residual, a fixed MB6 k3 layer to 320.
    'bossnas': Layout(
        'bossnas', stem=32, first=(16, 1),
        stages=_stages((24, 40, 80, 112, 192), (2, 2, 2, 1, 2),
                       (2, 4, 4, 4, 4), BOSSNAS_OPS),
        tail=(Stage(320, 1, 1, (Op(3, 6),)),), head=1280),
    # DNA's space: kernels 3/5/7 x expansion 3/6, the 320 stage searched too
    # (6 blocks), residuals only where the shape is kept.
    'dna': Layout(
        'dna', stem=32, first=(16, 1),
        stages=_stages((24, 40, 80, 112, 192, 320), (2, 2, 2, 1, 2, 1),
                       (2, 4, 4, 4, 4, 1), DNA_OPS),
        tail=(), head=1280, residual='identity'),
    # The SPOS/ProxylessNAS space GreedyNAS searches: 21 layers, 7 choices
    # (identity included), MobileNetV2's stem and widths, ReLU6, no SE.
    'spos': Layout(
        'spos', stem=32, first=(16, 1),
        stages=_stages((32, 40, 80, 96, 192, 320), (2, 2, 2, 1, 2, 1),
                       (4, 4, 4, 4, 4, 1), SPOS_OPS),
        tail=(), head=1280, act='relu6', se=0.0, residual='identity'),
    # Fixed networks written in the same terms, for counting.
    'efficientnet_b0': Layout(
        'efficientnet_b0', stem=32, first=(16, 1),
        stages=(Stage(24, 2, 2, (Op(3, 6),)), Stage(40, 2, 2, (Op(5, 6),)),
                Stage(80, 2, 3, (Op(3, 6),)), Stage(112, 1, 3, (Op(5, 6),)),
                Stage(192, 2, 4, (Op(5, 6),)), Stage(320, 1, 1, (Op(3, 6),))),
        tail=(), head=1280, residual='identity'),
    'mobilenet_v2': Layout(
        'mobilenet_v2', stem=32, first=(16, 1),
        stages=_stages((24, 32, 64, 96, 160, 320), (2, 2, 2, 1, 2, 1),
                       (2, 3, 4, 3, 3, 1), (Op(3, 6),)),
        tail=(), head=1280, act='relu6', se=0.0, residual='identity'),
}


def _fixed(name, base, stages):
  """A fixed network on `base`'s stem, head and rules: `stages` lists
  (width, stride, ((kernel, expansion) per layer)); one Stage per layer."""
  out = []
  for width, stride, ops in stages:
    out += [Stage(width, stride if i == 0 else 1, 1, (Op(k, e),))
            for i, (k, e) in enumerate(ops)]
  return dataclasses.replace(base, name=name, stages=tuple(out))


# DNA's published networks (changlin31/DNA, retraining/model.py). DNA-c is a
# path of the 'dna' layout; a, b and d come from its multi-cell search with
# other depths and widths (docs/mbconv.md).
_DNA_NETS = {
    'dna_a': ((24, 2, ((5, 3), (3, 3), (3, 6))),
              (40, 2, ((3, 3), (3, 3), (5, 3), (3, 6))),
              (80, 2, ((7, 6), (3, 3), (5, 3), (3, 6))),
              (96, 1, ((5, 6), (5, 3), (5, 3), (5, 6))),
              (160, 2, ((5, 6), (5, 3), (5, 3), (5, 3), (5, 6))),
              (320, 1, ((3, 6),))),
    'dna_b': ((24, 2, ((3, 3), (5, 3), (7, 6))),
              (40, 2, ((7, 6), (5, 3), (7, 6))),
              (80, 2, ((5, 6), (5, 3), (5, 3), (3, 6))),
              (96, 1, ((5, 6), (5, 3), (5, 3), (5, 6))),
              (192, 2, ((7, 6), (5, 3), (5, 3), (5, 3), (7, 6))),
              (320, 1, ((3, 6),))),
    'dna_c': ((24, 2, ((5, 6), (3, 6))),
              (40, 2, ((5, 6), (5, 6), (3, 6), (5, 6))),
              (80, 2, ((5, 6), (3, 6), (5, 6), (5, 6))),
              (112, 1, ((3, 6), (5, 6), (5, 6), (5, 3))),
              (192, 2, ((5, 6), (5, 3), (5, 6), (5, 6))),
              (320, 1, ((3, 6),))),
    'dna_d': ((24, 2, ((7, 6), (5, 6), (7, 6))),
              (40, 2, ((7, 6),) * 4),
              (80, 2, ((7, 6), (5, 6), (5, 6), (7, 6))),
              (112, 1, ((7, 6), (5, 6), (7, 6), (5, 6))),
              (192, 2, ((7, 6), (5, 6), (5, 6), (5, 6), (7, 6))),
              (320, 1, ((3, 6),))),
}
LAYOUTS.update({name: _fixed(name, LAYOUTS['dna'], stages)
                for name, stages in _DNA_NETS.items()})


def searched_layers(layout):
  """(stage index, layer index, in width, out width, stride) of every
  searched layer, in order."""
  out, width = [], layout.first[0]
  for s, st in enumerate(layout.stages):
    for i in range(st.layers):
      out.append((s, i, width, st.width, st.stride if i == 0 else 1))
      width = st.width
  return out


# -- cost ---------------------------------------------------------------------
CONVENTIONS = ('madds', 'ptflops')


class Cost:
  """Accumulates (multiply-adds, parameters) of a network, layer by layer.

  convention='ptflops' counts as DNA's FLOPs counter (changlin31/DNA,
  searching/timm_/flops_counter.py, a ptflops variant) does: also 2 per
  batch-norm output element, 1 per bias output element and the global
  pool's input; DNA's published FLOPs are in this convention."""

  def __init__(self, convention='madds'):
    if convention not in CONVENTIONS:
      raise ValueError(f'cost convention {convention!r}: use one of '
                       f'{CONVENTIONS}')
    self.ptflops = convention == 'ptflops'
    self.madds = 0
    self.params = 0

  def conv(self, cin, cout, k, hw, groups=1, bias=False, bn=True):
    self.madds += k * k * (cin // groups) * cout * hw * hw
    self.params += k * k * (cin // groups) * cout + (cout if bias else 0) + (
        2 * cout if bn else 0)
    if self.ptflops:
      self.madds += ((2 if bn else 0) + (1 if bias else 0)) * cout * hw * hw

  def pool(self, width, hw):
    if self.ptflops:
      self.madds += width * hw * hw

  def linear(self, cin, cout):
    self.madds += cin * cout + (cout if self.ptflops else 0)
    self.params += cin * cout + cout


def _out(hw, stride):
  return -(-hw // stride)  # 'same' padding


def se_width(layout, cin):
  v = cin * layout.se
  return max(1, int(v)) if layout.se_floor else make_divisible(v,
                                                               layout.divisor)


def op_cost(cost, layout, op, cin, cout, stride, hw):
  """Add one layer (an Op or IDENTITY) at input resolution hw; returns the
  output resolution."""
  out = _out(hw, stride)
  if op == IDENTITY:
    if stride != 1 or cin != cout:
      raise ValueError(f'{layout.name}: identity where the shape changes '
                       f'({cin}->{cout}, stride {stride})')
    return out
  hidden = make_divisible(cin * op.expansion, layout.divisor) if (
      op.expansion != 1) else cin
  if op.expansion != 1:
    cost.conv(cin, hidden, 1, hw)
  cost.conv(hidden, hidden, op.kernel, out, groups=hidden)
  if layout.se:
    s = se_width(layout, cin)
    cost.conv(hidden, s, 1, 1, bias=True, bn=False)
    cost.conv(s, hidden, 1, 1, bias=True, bn=False)
  cost.conv(hidden, cout, 1, out)
  if layout.residual == 'shortcut' and (stride != 1 or cin != cout):
    cost.conv(cin, cout, 1, out)  # after the 2x2 average pool
  return out


def network_cost(layout, ops, resolution=224, num_classes=1000,
                 cifar_stem=False, convention='madds'):
  """(MAdds, params) of the network with `ops` (one Op per searched layer);
  convention='ptflops': DNA's FLOPs instead of MAdds (`Cost`)."""
  layers = searched_layers(layout)
  if len(ops) != len(layers):
    raise ValueError(f'{layout.name}: {len(layers)} layers, got {len(ops)} ops')
  cost = Cost(convention)
  hw = _out(resolution, 1 if cifar_stem else 2)
  cost.conv(3, layout.stem, 3, hw)
  width, exp = layout.first
  hw = op_cost(cost, dataclasses.replace(layout, residual='identity'),
               Op(3, exp), layout.stem, width, 1, hw)
  for (_, _, cin, cout, stride), op in zip(layers, ops):
    hw = op_cost(cost, layout, op, cin, cout, stride, hw)
  width = layers[-1][3] if layers else width
  for st in layout.tail:
    for i in range(st.layers):
      hw = op_cost(cost, layout, st.ops[0], width, st.width,
                   st.stride if i == 0 else 1, hw)
      width = st.width
  if layout.head:
    cost.conv(width, layout.head, 1, hw)
    width = layout.head
  cost.pool(width, hw)
  cost.linear(width, num_classes)
  return cost.madds, cost.params


def fixed_ops(layout):
  """The single choice of every layer of a fixed network's layout."""
  return [layout.stages[s].ops[0] for s, *_ in searched_layers(layout)]


def count(name, resolution=224, convention='madds'):
  """(MAdds, params) of a named fixed network (efficientnet_b0, ...)."""
  layout = LAYOUTS[name]
  return network_cost(layout, fixed_ops(layout), resolution,
                      convention=convention)


if __name__ == '__main__':
  for n in ('efficientnet_b0', 'mobilenet_v2'):
    m, p = count(n)
    print(f'{n}: {m / 1e6:.1f} M MAdds, {p:,} params')
  print(math.prod(len(s.ops) ** s.layers for s in LAYOUTS['bossnas'].stages))
