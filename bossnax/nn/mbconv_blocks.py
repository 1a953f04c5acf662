"""MBConv building blocks and the network that is both supernet and
standalone (layouts and costs: spaces/mbconv_layouts.py).

Every searched layer holds its candidates with separate weights (`op{j}`,
j the candidate id) and picks one with a `lax.switch` (under `lax.map` over
paths only the chosen one runs). With `fixed` choice ids the same module is
the standalone network: only the chosen candidate of every layer exists,
under the same names, so its variables are a subtree of the supernet's.
A layer's shortcut (BossNAS: avg-pool 2x2 + 1x1 conv + BN where the shape
changes) belongs to the layer and is shared by its candidates.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from bossnax.nn.grouping import block_groups
from bossnax.nn.hytra_blocks import bn, conv, pick
from bossnax.spaces import mbconv_layouts as L

ACTS = {'silu': nn.silu, 'relu6': nn.relu6, 'relu': nn.relu}


class ConvBN(nn.Module):
  features: int
  kernel: int
  stride: int = 1
  groups: int = 1
  act: str = ''

  @nn.compact
  def __call__(self, x, mode):
    x = conv(self.features, self.kernel, self.stride, self.groups,
             name='conv')(x)
    x = bn(self.features, 'bn')(x, 0, mode)
    return ACTS[self.act](x) if self.act else x


class SqueezeExcite(nn.Module):
  """Channel gate: pool, 1x1 to `reduced` (bias, activation), 1x1 back
  (bias), sigmoid."""
  reduced: int
  act: str

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    s = x.mean((1, 2), keepdims=True)
    s = ACTS[self.act](nn.Conv(self.reduced, (1, 1), name='reduce')(s))
    s = nn.Conv(c, (1, 1), name='expand')(s)
    return x * jax.nn.sigmoid(s)


class InvertedResidual(nn.Module):
  """1x1 expand (not for expansion 1), depthwise kxk (the stride), SE,
  1x1 project + BN: the body of one candidate, without the residual."""
  op: L.Op
  hidden: int
  features: int
  stride: int
  se: int  # reduced SE width, 0: none
  act: str

  @nn.compact
  def __call__(self, x, mode):
    h = x
    if self.op.expansion != 1:
      h = ConvBN(self.hidden, 1, act=self.act, name='expand')(h, mode)
    h = ConvBN(self.hidden, self.op.kernel, self.stride, self.hidden,
               self.act, name='dw')(h, mode)
    if self.se:
      h = SqueezeExcite(self.se, self.act, name='se')(h)
    return ConvBN(self.features, 1, name='project')(h, mode)


class Shortcut(nn.Module):
  """Where a layer changes shape: average pool 2x2 (ceil mode, padding not
  counted) when it strides, then 1x1 conv + BN."""
  features: int
  stride: int

  @nn.compact
  def __call__(self, x, mode):
    if self.stride > 1:
      h, w = x.shape[1:3]
      pad = ((0, 0), (0, h % 2), (0, w % 2), (0, 0))  # ceil mode
      total = nn.avg_pool(jnp.pad(x, pad), (2, 2), (2, 2))
      ones = jnp.pad(jnp.ones((1, h, w, 1), x.dtype), pad)
      x = total / nn.avg_pool(ones, (2, 2), (2, 2))  # mean of real pixels
    return ConvBN(self.features, 1, name='proj')(x, mode)


class SearchedLayer(nn.Module):
  """One layer: its candidates (`choices`: candidate ids that exist here)
  and its residual."""
  layout: L.Layout
  cin: int
  features: int
  stride: int
  choices: tuple  # candidate ids (into the stage's ops) held by this layer
  ops: tuple  # the stage's candidate Ops

  @nn.compact
  def __call__(self, x, choice, mode):
    lay = self.layout
    keep = self.stride == 1 and self.cin == self.features

    def candidate(j):
      op = self.ops[j]
      if op == L.IDENTITY:
        return lambda mdl, x: x
      hidden = L.make_divisible(self.cin * op.expansion, lay.divisor) if (
          op.expansion != 1) else self.cin
      se = L.se_width(lay, self.cin) if lay.se else 0
      body = InvertedResidual(op, hidden, self.features, self.stride, se,
                              lay.act, name=f'op{j}')
      return lambda mdl, x: body(x, mode)

    branches = [candidate(j) for j in self.choices]
    if len(branches) == 1:
      y = branches[0](self, x)
    else:
      table = jnp.zeros(len(self.ops), jnp.int32).at[jnp.asarray(
          self.choices)].set(jnp.arange(len(self.choices)))
      y = pick(self, table[choice], branches, x)
    is_identity = [self.ops[j] == L.IDENTITY for j in self.choices]
    if lay.residual == 'shortcut':
      short = x if keep else Shortcut(self.features, self.stride,
                                      name='shortcut')(x, mode)
    elif keep:
      short = x
    else:
      return y
    if len(self.choices) == 1:
      return y if is_identity[0] else y + short
    if not any(is_identity):
      return y + short
    # an identity candidate is the layer's input already: no residual on it
    ident = jnp.zeros(len(self.ops), bool).at[jnp.asarray(
        self.choices)].set(jnp.asarray(is_identity))
    return jnp.where(ident[choice], y, y + short)


def _stem(scope, net, x, mode):
  del scope  # block 0's group
  lay = net.lay
  x = ConvBN(lay.stem, 3, 1 if net.cifar_stem else 2, act=lay.act,
             name='stem')(x, mode)
  width, exp = lay.first
  se = L.se_width(lay, lay.stem) if lay.se else 0
  hidden = lay.stem if exp == 1 else L.make_divisible(lay.stem * exp,
                                                      lay.divisor)
  return InvertedResidual(L.Op(3, exp), hidden, width, 1, se, lay.act,
                          name='first')(x, mode)


class MBConvNetwork(nn.Module):
  """Supernet (`fixed=None`) or standalone network (`fixed` = choice ids).

  Call with a flat int32 `arch` (a candidate id per searched layer) and:
    output='embed'     block `block`'s output, globally pooled: [B, width
                       of the block] (the block's neck input);
    output='features'  block `block`'s output map;
    output='logits'    the whole network: tail, head conv, pool, classifier.
  Blocks before `block` run under stop_gradient, BN 'frozen' while
  training. start=True: `x` is block `block - 1`'s output and only block
  `block` runs. Block k is searched stage k; the stem and first block
  belong to block 0, the tail, head and classifier to the last block.
  """
  layout: L.Layout = L.LAYOUTS['bossnas']
  num_classes: int = 1000
  cifar_stem: bool = False
  fixed: tuple | None = None
  remat: bool = False
  grouped: bool = True

  @property
  def lay(self):
    return self.layout

  @nn.compact
  def __call__(self, x, arch, *, block: int | None = None, mode='train',
               output='embed', start: bool = False):
    lay = self.lay
    layers = L.searched_layers(lay)
    nb = len(lay.stages)
    init_all = self.is_initializing()
    whole = output == 'logits' or init_all
    last = nb - 1 if whole else block
    start = start and not whole and block > 0
    if self.fixed is not None:
      arch = jnp.asarray(self.fixed, jnp.int32)
    group = block_groups(self, nb, self.grouped)
    Layer = nn.remat(SearchedLayer, static_argnums=(3,)) if (
        self.remat and self.fixed is None) else SearchedLayer

    def layer_mode(k):
      return 'frozen' if (not whole and mode == 'train' and k < block) \
          else mode

    def run_layer(scope, i, h):
      del scope
      s, j, cin, cout, stride = layers[i]
      ops = lay.stages[s].ops
      # the identity skips only a layer that keeps the shape (the space has
      # no such choice elsewhere, spaces/mbconv.py)
      skippable = stride == 1 and cin == cout
      choices = tuple(j for j, op in enumerate(ops)
                      if op != L.IDENTITY or skippable) if (
                          self.fixed is None) else (int(self.fixed[i]),)
      return Layer(self.layout, cin, cout, stride, choices, ops,
                   name=f'layer{i}')(h, arch[i], layer_mode(s))

    h = x
    first_layer = 0
    if start:
      first_layer = next(i for i, l in enumerate(layers) if l[0] == block)
    else:
      h = group[0](_stem, self, x, layer_mode(0))
    outs = {}
    for i in range(first_layer, len(layers)):
      s = layers[i][0]
      if s > last:
        break
      h = group[s](run_layer, i, h)
      if i + 1 == len(layers) or layers[i + 1][0] != s:
        outs[s] = h
        if not whole and s < block:
          h = jax.lax.stop_gradient(h)  # finished blocks stay fixed

    def classify(scope, h):
      del scope  # the last block's group
      width = layers[-1][3]
      for t, st in enumerate(lay.tail):
        for r in range(st.layers):
          h = SearchedLayer(self.layout, width, st.width,
                            st.stride if r == 0 else 1, (0,), st.ops,
                            name=f'tail{t}_{r}')(h, 0, mode)
          width = st.width
      if lay.head:
        h = ConvBN(lay.head, 1, act=lay.act, name='head')(h, mode)
      return nn.Dense(self.num_classes, name='classifier')(h.mean((1, 2)))

    if init_all:
      return [outs[k].mean((1, 2)) for k in range(nb)], group[nb - 1](
          classify, outs[nb - 1])
    if output == 'features':
      return outs[block]
    if output == 'logits':
      return group[nb - 1](classify, outs[nb - 1])
    return outs[block].mean((1, 2))
