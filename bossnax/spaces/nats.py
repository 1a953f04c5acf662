"""NATS-Bench size search space (SSS), as the benchmark defines it.

    stem   conv3x3 3->c0, BN                            32x32
    cell   c0->c0  (fixed NATS topology below)          32x32
    res    ResNet basic block, stride 2, c0->c1         16x16
    cell   c1->c2                                       16x16
    res    basic block, stride 2, c2->c3                  8x8
    cell   c3->c4                                         8x8
    BN, ReLU, global pool, linear

Cell topology: |nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+
|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|, nor_conv = ReLU-Conv-BN; edges
out of the cell input map C_in->C_out, the others C_out->C_out; a skip between
different widths is a 1x1 conv + BN (NATS's FactorizedReduce at stride 1).

Each c_i is one of {8, 16, ..., 64}: 8^5 = 32,768 architectures, written
`c0:c1:c2:c3:c4`. One layer of the search space = one c_i (layer 0 holds the
stem and the first cell, which share c0).

The same module is the supernet (every layer may take any width: widest
weights with channel masks, batch norm per width) and the standalone network
(each layer has one width: no masks, no extra rows). `slice_variables` turns
supernet variables into a standalone network's.
"""

from __future__ import annotations


import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bossnax.nn.grouping import block_groups
from bossnax.nn.init import check as check_init
from bossnax.nn.init import conv as _conv
from bossnax.nn.init import per_choice_init
from bossnax.nn.switchable import SwitchableBatchNorm, channel_mask
from bossnax.spaces.base import Arch, Block, Layer, SearchSpace

WIDTHS = (8, 16, 24, 32, 40, 48, 56, 64)
# Block splits of the official BossNAS release.
BLOCK_SPLITS = {
    'cifar10': ((0, 1), (2, 3), (4,)),
    'cifar100': ((0, 1), (2,), (3, 4)),
}


class _ConvBN(nn.Module):
  """[ReLU] - conv - switchable BN, masked to the active output width."""
  features: int
  num_widths: int
  kernel: int = 3
  stride: int = 1
  relu_first: bool = True
  conv_init: str = 'torch'

  @nn.compact
  def __call__(self, x, w_index, mask, mode, active=None):
    if self.relu_first:
      x = nn.relu(x)
    x = _conv(self.features, self.kernel, self.stride, 'conv',
              self.conv_init)(x) * mask
    return SwitchableBatchNorm(self.num_widths, self.features, name='bn')(
        x, w_index, mode, mask, active)


def _fit(x, features):
  """x with `features` channels: cut or zero-padded. Exact for an identity
  skip, whose input is zero beyond the (equal) active width; the widths
  differ only in a narrowed supernet (`NATSSpace.narrow`)."""
  c = x.shape[-1]
  if c >= features:
    return x[..., :features]
  return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, features - c)])


class _Cell(nn.Module):
  """The fixed NATS cell; input width w_in, output width w_out.

  static_skip: the input and output widths are fixed (a standalone net), so
  the skip is decided at trace time (an identity between equal widths has no
  weights). skip_relu: ReLU before the projection skip (the official BossNAS
  supernet; NATS-Bench has none)."""
  features: int
  num_widths: int
  static_skip: bool = False
  conv_init: str = 'torch'
  skip_relu: bool = False

  @nn.compact
  def __call__(self, x, w_in, w_out, idx_out, mask, mode):
    edge = lambda name: _ConvBN(self.features, self.num_widths, name=name,
                                conv_init=self.conv_init)
    n1 = edge('e01')(x, idx_out, mask, mode)
    n2 = edge('e02')(x, idx_out, mask, mode) + edge('e12')(
        n1, idx_out, mask, mode)
    skip_proj = lambda: _ConvBN(self.features, self.num_widths, kernel=1,
                                relu_first=self.skip_relu, name='skip',
                                conv_init=self.conv_init)
    if self.static_skip:
      skip = x if x.shape[-1] == self.features else skip_proj()(
          x, idx_out, mask, mode)
    else:
      # Computed for every path; a path with equal widths takes the
      # identity and leaves the projection's statistics alone.
      same = w_in == w_out
      proj = skip_proj()(x, idx_out, mask, mode, active=~same)
      skip = jnp.where(same, _fit(x, self.features), proj)
    return skip + edge('e13')(n1, idx_out, mask, mode) + edge('e23')(
        n2, idx_out, mask, mode)


class _ResBlock(nn.Module):
  """ResNet basic block, stride 2: ReLUConvBN x2 + avgpool-conv1x1 shortcut."""
  features: int
  num_widths: int
  conv_init: str = 'torch'

  @nn.compact
  def __call__(self, x, idx_out, mask, mode):
    y = _ConvBN(self.features, self.num_widths, stride=2, name='conv_a',
                conv_init=self.conv_init)(x, idx_out, mask, mode)
    y = _ConvBN(self.features, self.num_widths, name='conv_b',
                conv_init=self.conv_init)(y, idx_out, mask, mode)
    s = nn.avg_pool(x, (2, 2), (2, 2))
    # no batch norm after this conv: its init scale sets the shortcut's
    # share of the output (space.conv_init, docs/architecture.md)
    s = _conv(self.features, 1, 1, 'shortcut', self.conv_init)(s) * mask
    return y + s


class NATSNetwork(nn.Module):
  """Supernet (8 widths per layer) or standalone net (1 width per layer).

  Call with a flat int32 `arch` (a width index per layer) and:
    output='embed'    block `block`'s output through its width adapter,
                      pooled: [B, embed_dim] (what the SSL heads see);
    output='features' block `block`'s output map, masked;
    output='logits'   the whole network with its classifier;
    output='pooled'   the whole network without its classifier: (the
                      pooled last features [B, C] after the last BN and
                      ReLU, masked to the path's width, and that map).
  Blocks before `block` run under stop_gradient; while training they use batch
  statistics without updating them (they are finished). start=True: `x` is
  already the output of block `block - 1` (computed once for all paths of a
  step), and only block `block` runs.
  """
  channel_choices: tuple  # per layer, e.g. ((8, ..., 64),) * 5
  block_layers: tuple  # layer indices per block, e.g. ((0, 1), (2, 3), (4,))
  embed_dim: int = 256
  num_classes: int = 10
  # Recompute each cell's / residual block's activations in the backward
  # pass. NATS blocks are one to three layers deep, too shallow to gain
  # (measured in docs/performance.md); the switch is for deep blocks.
  remat: bool = False
  # Variables under block{k} (False: the ungrouped layout `grouping.init`
  # draws initial values in).
  grouped: bool = True
  conv_init: str = 'torch'  # nn/init.py
  skip_relu: bool = False  # ReLU before the cells' projection skip

  def _widths(self, arch):
    tables = [jnp.asarray(c, jnp.int32) for c in self.channel_choices]
    return [t[arch[i]] for i, t in enumerate(tables)]

  @nn.compact
  def __call__(self, x, arch, *, block: int | None = None, mode='train',
               output='embed', start: bool = False):
    nw = [len(c) for c in self.channel_choices]
    cmax = [max(c) for c in self.channel_choices]
    widths = self._widths(arch)
    masks = [channel_mask(w, c, x.dtype) for w, c in zip(widths, cmax)]
    layer_block = {l: b for b, ls in enumerate(self.block_layers) for l in ls}
    init_all = self.is_initializing()
    whole = output in ('logits', 'pooled')
    last = (len(self.channel_choices) - 1 if whole or init_all
            else self.block_layers[block][-1])

    def layer_mode(i):
      if whole or block is None or init_all:
        return mode
      if layer_block[i] < block and mode == 'train':
        return 'frozen'
      return mode

    # `mode` (a string) is static: argument 6 of a cell, 4 of a res block
    # (flax counts the module itself as argument 0). Default policy: nothing
    # inside a layer is saved. dots_with_no_batch_dims_saveable would change
    # nothing here (it keeps dot_general outputs; a layer is convolutions and
    # BN), and saving the convolutions would keep what remat is meant to drop.
    # Per layer rather than one jax.checkpoint around each path (commit
    # 0da785c): a single segment is recomputed whole in the backward, so it
    # cannot lower the peak; per layer, only layer inputs live across the
    # backward, which is what can help deep blocks. Neither saves on NATS
    # (docs/performance.md).
    Cell = nn.remat(_Cell, static_argnums=(6,)) if self.remat else _Cell
    Res = nn.remat(_ResBlock, static_argnums=(4,)) if self.remat else _ResBlock

    def run_layer(scope, i, h):
      del scope  # modules created here land in the layer's block group
      m = layer_mode(i)
      if i == 0:
        h = _ConvBN(cmax[0], nw[0], relu_first=False, name='stem',
                    conv_init=self.conv_init)(h, arch[0], masks[0], m)
        return Cell(cmax[0], nw[0], nw[0] == 1, self.conv_init,
                    self.skip_relu, name='cell0')(
            h, widths[0], widths[0], arch[0], masks[0], m)
      if i in (1, 3):
        return Res(cmax[i], nw[i], self.conv_init, name=f'res{i // 2}')(
            h, arch[i], masks[i], m)
      return Cell(cmax[i], nw[i], nw[i] == nw[i - 1] == 1, self.conv_init,
                  self.skip_relu, name=f'cell{i // 2}')(
          h, widths[i - 1], widths[i], arch[i], masks[i], m)

    # Every variable lives under the block that owns it (nn/grouping.py):
    # its layers, its width adapter, and for the last block the classifier.
    group = block_groups(self, len(self.block_layers), self.grouped)
    outs = {}
    h = x
    first = self.block_layers[block][0] if start and not init_all else 0
    for i in range(first, last + 1):
      b = layer_block[i]
      h = group[b](run_layer, i, h)
      if i == self.block_layers[b][-1]:
        outs[b] = h
        if not init_all and not whole and b < block:
          h = jax.lax.stop_gradient(h)  # finished blocks stay fixed

    # (module-level functions: a method of self would create its modules
    # in self, not in the group)
    embed = lambda b: group[b](_embed, self, outs[b], arch, b, mode)
    last_group = group[layer_block[len(nw) - 1]]
    pooled = lambda h: last_group(_last_act, self, h, arch, mode)
    classify = lambda pooled_h: last_group(_classify, self, pooled_h)
    if init_all:  # create every adapter and the classifier
      embeds = [embed(b) for b in range(len(self.block_layers))]
      out = pooled(h)
      logits = classify(out[0])
      return out if output == 'pooled' else (embeds, logits)
    if output == 'features':
      return outs[block]
    if output == 'logits':
      return classify(pooled(h)[0])
    if output == 'pooled':
      return pooled(h)
    return embed(block)


def _embed(scope, net, h, arch, b, mode):
  """Per output width its own 1x1 conv + BN to a fixed width, then pool
  (no ReLU, as in the official release)."""
  i = net.block_layers[b][-1]
  nw, cmax = len(net.channel_choices[i]), max(net.channel_choices[i])
  # one 1x1 kernel per width, reading that width's channels
  init = per_choice_init(net.conv_init, net.channel_choices[i])
  kernel = scope.param(f'adapter{b}_kernel', init,
                       (nw, cmax, net.embed_dim))
  y = jnp.einsum('bhwc,cd->bhwd', h, kernel[arch[i]].astype(h.dtype))
  y = SwitchableBatchNorm(nw, net.embed_dim, name=f'adapter{b}_bn')(
      y, arch[i], mode)
  return y.mean((1, 2))


def _last_act(scope, net, h, arch, mode):
  """(pooled features [B, C], the map [B, H, W, C]) after the last BN and
  ReLU, zero beyond the path's last width."""
  del scope
  i = len(net.channel_choices) - 1
  nw, cmax = len(net.channel_choices[i]), max(net.channel_choices[i])
  mask = channel_mask(net._widths(arch)[i], cmax, h.dtype)
  h = SwitchableBatchNorm(nw, cmax, name='lastact_bn')(h, arch[i], mode,
                                                       mask)
  h = nn.relu(h)  # zero beyond the width: the BN masks its output
  return h.mean((1, 2)), h


def _classify(scope, net, pooled):
  del scope
  return nn.Dense(net.num_classes, name='classifier')(pooled)


# ---------------------------------------------------------------------------
# Cost model: NATS-Bench counts multiply-adds of convs and the classifier.

def nats_flops_params(channels, num_classes=10, resolution=32):
  """(multiply-adds, params) of the standalone network `channels`."""
  madds, params = nats_layer_costs(channels, num_classes, resolution)
  return int(sum(madds)), int(sum(params))


def nats_layer_costs(channels, num_classes=10, resolution=32):
  """Per layer (stem + cell 0, res 0, cell 1, res 1, cell 2 + last BN and
  classifier): ([multiply-adds] x 5, [params] x 5) of the standalone
  network `channels` (what a block's share of a step costs: the GPU
  benchmarks' model FLOPs)."""
  c0, c1, c2, c3, c4 = channels
  flops = params = 0
  marks = []

  def conv(cin, cout, k, hw, bn=True):
    nonlocal flops, params
    flops += cin * cout * k * k * hw * hw
    params += cin * cout * k * k + (2 * cout if bn else 0)

  def cell(cin, cout, hw):
    for src in (cin, cin, cout, cout, cout):  # e01 e02 e12 e13 e23
      conv(src, cout, 3, hw)
    if cin != cout:
      conv(cin, cout, 1, hw)

  def res(cin, cout, hw_out):
    conv(cin, cout, 3, hw_out)
    conv(cout, cout, 3, hw_out)
    conv(cin, cout, 1, hw_out, bn=False)

  r = resolution
  mark = lambda: marks.append((flops, params))
  conv(3, c0, 3, r)
  cell(c0, c0, r)
  mark()
  res(c0, c1, r // 2)
  mark()
  cell(c1, c2, r // 2)
  mark()
  res(c2, c3, r // 4)
  mark()
  cell(c3, c4, r // 4)
  params += 2 * c4  # last BN
  flops += c4 * num_classes
  params += c4 * num_classes + num_classes
  mark()
  ends = [(0, 0)] + marks
  return ([b[0] - a[0] for a, b in zip(ends, ends[1:])],
          [b[1] - a[1] for a, b in zip(ends, ends[1:])])


class NATSSpace(SearchSpace):
  """The size search space: 5 layers of 8 widths in 3 blocks."""

  def __init__(self, block_split='cifar10', num_classes=10, embed_dim=256,
               widths=WIDTHS, conv_init='torch', skip_relu=False):
    if isinstance(block_split, str) and block_split[:1].isdigit():
      # '0,1|2,3|4': layers of each block, blocks separated by '|'
      block_split = tuple(tuple(int(l) for l in b.split(','))
                          for b in block_split.split('|'))
    if isinstance(block_split, str):
      if block_split not in BLOCK_SPLITS:
        raise ValueError(f'nats block_split {block_split!r}: use one of '
                         f'{sorted(BLOCK_SPLITS)} or layers like 0,1|2,3|4')
      block_split = BLOCK_SPLITS[block_split]
    layers = sorted(l for b in block_split for l in b)
    if layers != list(range(5)):
      raise ValueError(f'nats block_split {block_split}: must cover layers '
                       '0..4 once, in order, e.g. 0,1|2,3|4')
    self.name = 'nats'
    self.conv_init = check_init(conv_init)
    self.skip_relu = bool(skip_relu)
    self.widths = tuple(widths)
    self.block_split = tuple(tuple(b) for b in block_split)
    self.num_classes = num_classes
    self.embed_dim = embed_dim
    self.blocks = tuple(
        Block(f'block{k}', tuple(Layer(f'c{i}', self.widths) for i in b))
        for k, b in enumerate(self.block_split))

  def to_string(self, arch: Arch) -> str:
    flat = self.flatten(arch)
    return ':'.join(str(self.widths[i]) for i in flat)

  def from_string(self, text: str) -> Arch:
    try:
      chans = [int(t) for t in str(text).split(':')]
    except ValueError:
      chans = []
    if len(chans) != 5 or any(c not in self.widths for c in chans):
      raise ValueError(f'nats architecture {text!r}: write five widths from '
                       f'{self.widths} as c0:c1:c2:c3:c4, e.g. 8:16:32:64:64')
    return self.unflatten([self.widths.index(c) for c in chans])

  def channels(self, arch: Arch) -> tuple[int, ...]:
    return tuple(self.widths[i] for i in self.flatten(arch))

  def flops_params(self, arch: Arch, resolution: int = 32, **kw):
    del kw
    return nats_flops_params(self.channels(arch), self.num_classes,
                             resolution)

  def index(self, arch: Arch) -> int:
    """NATS-Bench index: position in itertools.product(widths, repeat=5)."""
    idx = 0
    for i in self.flatten(arch):
      idx = idx * len(self.widths) + int(i)
    return idx

  def supernet(self, embed_dim: int | None = None,
               remat: bool = False) -> NATSNetwork:
    return NATSNetwork(channel_choices=(self.widths,) * 5,
                       block_layers=self.block_split,
                       embed_dim=embed_dim or self.embed_dim,
                       num_classes=self.num_classes, remat=remat,
                       conv_init=self.conv_init, skip_relu=self.skip_relu)

  def per_choice_mask(self, params):
    """The width adapters: one [C, embed] kernel per width, stacked."""
    def adapter(path, _):
      name = jax.tree_util.keystr(path[-1:], simple=True)
      return name.startswith('adapter') and name.endswith('_kernel')
    return jax.tree_util.tree_map_with_path(adapter, params)

  def block_output_varies(self, k: int) -> bool:
    return len(self.widths) > 1  # every layer's width is searched

  def standalone(self, arch: Arch) -> tuple[NATSNetwork, np.ndarray]:
    """The plain network of one architecture and the arch vector it takes."""
    chans = self.channels(arch)
    net = NATSNetwork(channel_choices=tuple((c,) for c in chans),
                      block_layers=self.block_split, embed_dim=self.embed_dim,
                      num_classes=self.num_classes, conv_init=self.conv_init,
                      skip_relu=self.skip_relu)
    return net, np.zeros(5, np.int32)

  def slice_variables(self, variables, arch: Arch):
    """Supernet variables -> the standalone network's for `arch`.

    Kernels are cut to the active input/output channels; batch-norm rows and
    adapter kernels are the ones of the chosen width.
    """
    flat = self.flatten(arch)
    rows = [slice(int(f), int(f) + 1) for f in flat]
    return _slice_tree(variables, rows, self.channels(arch), self.block_split)

  # -- narrowed supernets: paths grouped by width run at their group's width --
  def narrow(self, net: NATSNetwork, limits) -> NATSNetwork:
    """The supernet whose layer i keeps only its first `limits[i]` widths:
    it computes what `net` computes for every path within the limits (the
    channels it drops are the ones those paths mask to zero), with
    narrower convolutions. Choice indices are unchanged."""
    return net.clone(channel_choices=tuple(
        tuple(self.widths[:int(n)]) for n in limits))

  def narrow_variables(self, variables, limits):
    """Supernet variables (a dict of collections) -> those of `narrow`."""
    rows = [slice(0, int(n)) for n in limits]
    chans = [self.widths[int(n) - 1] for n in limits]
    return _slice_tree(variables, rows, chans, self.block_split)

  def widen_variables(self, full, narrow, limits):
    """Write `narrow` (from `narrow_variables`, e.g. updated batch
    statistics) back into `full`; what the narrowing dropped keeps its
    value in `full`."""
    del limits  # every narrowed leaf is a leading window of its full leaf
    def rec(f, n):
      if hasattr(f, 'keys'):
        return {k: rec(v, n[k]) if k in n else v for k, v in f.items()}
      window = tuple(slice(0, d) for d in n.shape)
      return f.at[window].set(n.astype(f.dtype))
    return rec(full, narrow)


def _layer_of(path, block_split):
  """The layer (0..4) that owns a variable, from its module path inside
  its block group (what slicing needs: the widths of that layer)."""
  top = path[0]
  if top.startswith('adapter'):  # adapter{b}_...: owned by block b's end
    return block_split[int(top[len('adapter'):].split('_')[0])][-1]
  if top in ('stem', 'cell0'):
    return 0
  if top.startswith('res'):
    return 2 * int(top[3:]) + 1
  if top.startswith('cell'):
    return 2 * int(top[4:])
  if top.startswith('lastact') or top == 'classifier':
    return 4
  raise ValueError(f'no NATS layer owns variable {"/".join(path)}')


def _slice_tree(tree, rows, chans, block_split):
  """Walk the variable tree, slicing each leaf by the layer that owns it:
  batch-norm rows (and adapter kernels) `rows[i]`, output channels
  `chans[i]`, input channels the previous layer's."""
  layer_of = lambda path: _layer_of(path, block_split)

  def in_width(path, i):
    # The first conv of a cell/res edge from the block input sees the previous
    # layer's width; everything else sees this layer's width.
    top = path[0]
    if top == 'stem':
      return 3
    if top in ('cell0',):
      return chans[0]
    sub = path[1] if len(path) > 1 else ''
    if top.startswith('res') and sub in ('conv_a', 'shortcut'):
      return chans[i - 1]
    if top.startswith('cell') and sub in ('e01', 'e02', 'skip'):
      return chans[i - 1]
    if top == 'classifier':
      return chans[4]
    return chans[i]

  def rec(node, path):
    if isinstance(node, dict) or hasattr(node, 'items'):
      return {k: rec(v, path + (k,)) for k, v in node.items()}
    name = path[-1]
    rest = path[2:]  # path[0] is the collection, path[1] the block group
    i = layer_of(rest)
    r = rows[i]
    c = chans[i]
    if name.startswith('adapter'):  # [widths, C_in, embed]
      return node[r, :c]
    if rest[0].startswith('adapter'):  # its BN rows, embed wide
      return node[r]
    if name == 'kernel' and rest[-2] != 'classifier':
      return node[..., :in_width(rest, i), :c]
    if rest[-2] == 'classifier':
      return node[:c] if name == 'kernel' else node
    if name == 'hits':
      return node[r]
    return node[r, :c]  # scale, bias, mean, var rows of these widths

  out = {coll: rec(v, (coll,)) for coll, v in tree.items()}
  # A cell with fixed, equal input and output widths has an identity skip:
  # no weights (the `static_skip` of _Cell).
  single = [r.stop - r.start == 1 for r in rows]
  for i, cell in ((0, 'cell0'), (2, 'cell1'), (4, 'cell2')):
    prev = i - 1 if i else 0
    if single[i] and single[prev] and chans[i] == chans[prev]:
      for coll in out.values():
        for group in coll.values():
          if cell in group:
            group[cell] = {k: v for k, v in group[cell].items()
                           if k != 'skip'}
  return out
