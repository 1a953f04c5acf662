"""DATA's DynamicResNet as one flax module: the masked supernet and, with
one value per gene, the plain bottleneck ResNet of one architecture.

    stem     7x7 conv, stride 2, BN, ReLU, 3x3 max pool, stride 2
             ('cifar': 3x3 conv, stride 1, no pool)
    stage s  depth d_s bottlenecks of width w_s (output 4 w_s): 1x1 - 3x3
             (stride 2 in the first block of stages 2-4) - 1x1, BN after
             each, a 1x1 projection + BN shortcut in the first block
    pool, linear classifier

The supernet keeps every layer at its widest and zeroes the channels past
the path's width (so a path's kernels are the leading slices of the
widest: `W[..., :c_in, :c_out]`); batch norms keep one statistics row per
width choice (switchable BN, the official code shares one sliced BN);
blocks past a stage's depth are computed and discarded (`where`), their
batch statistics left alone. A path is data: one compiled program serves
every architecture.

The architecture vector (flat) is [stem, w_1..w_4, d_1..d_4], each a
choice index into the module's tables.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from bossnax.nn.grouping import block_groups
from bossnax.nn.init import conv as _conv
from bossnax.nn.switchable import SwitchableBatchNorm, channel_mask


class Bottleneck(nn.Module):
  """1x1 - 3x3 - 1x1 with BN (per width row), optional projection
  shortcut; `active` False: the input passes unchanged (depth)."""
  width: int  # the widest bottleneck width
  num_widths: int
  expansion: int = 4
  stride: int = 1
  project: bool = False
  conv_init: str = 'he_fan_out'

  @nn.compact
  def __call__(self, x, index, mid, out, mode, active):
    bn = lambda n, c: SwitchableBatchNorm(self.num_widths, c, name=n)
    wide = self.width * self.expansion
    y = _conv(self.width, 1, 1, 'conv1', self.conv_init)(x) * mid
    y = nn.relu(bn('bn1', self.width)(y, index, mode, mid, active))
    y = _conv(self.width, 3, self.stride, 'conv2', self.conv_init)(y) * mid
    y = nn.relu(bn('bn2', self.width)(y, index, mode, mid, active))
    y = _conv(wide, 1, 1, 'conv3', self.conv_init)(y) * out
    y = bn('bn3', wide)(y, index, mode, out, active)
    if self.project:  # a stage's first block: always active
      s = _conv(wide, 1, self.stride, 'down', self.conv_init)(x) * out
      return nn.relu(y + bn('down_bn', wide)(s, index, mode, out, active))
    return jnp.where(active, nn.relu(y + x), x)


class DynamicResNet(nn.Module):
  """Called as module(x, arch, block=0, mode=..., output=...):
    output='logits'  classifier logits [B, classes];
    output='pooled'  (pooled last features [B, 4 w_4max], zero past the
                     path's width; the last map [B, h, w, 4 w_4max]);
    output='embed'   the pooled features (what self-supervised heads read);
    output='features' the last map.
  One search block: every variable sits under block0."""
  stem_widths: tuple  # choices of the stem width
  stage_widths: tuple  # per stage, choices of the bottleneck width
  stage_depths: tuple  # per stage, choices of the depth
  expansion: int = 4
  num_classes: int = 1000
  stem: str = 'imagenet'  # 'imagenet' (7x7/2 + max pool) | 'cifar' (3x3/1)
  conv_init: str = 'he_fan_out'
  remat: bool = False
  grouped: bool = True

  @nn.compact
  def __call__(self, x, arch, *, block: int | None = 0, mode='train',
               output='logits', start=False):
    del block, start  # one search block
    group = block_groups(self, 1, self.grouped)[0]
    return group(_forward, self, x, arch, mode, output)


def _forward(scope, net, x, arch, mode, output):
  del scope  # modules created here land in block0
  tables = lambda values: jnp.asarray(values, jnp.int32)
  n_stages = len(net.stage_widths)
  stem_max = max(net.stem_widths)
  stem_w = tables(net.stem_widths)[arch[0]]
  h = _conv(stem_max, 7 if net.stem == 'imagenet' else 3,
            2 if net.stem == 'imagenet' else 1, 'stem', net.conv_init)(x)
  mask = channel_mask(stem_w, stem_max, h.dtype)
  h = SwitchableBatchNorm(len(net.stem_widths), stem_max, name='stem_bn')(
      h * mask, arch[0], mode, mask)
  h = nn.relu(h)
  if net.stem == 'imagenet':
    h = nn.max_pool(h, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
  Block = (nn.remat(Bottleneck, static_argnums=(5,)) if net.remat
           else Bottleneck)
  for s in range(n_stages):
    widths, depths = net.stage_widths[s], net.stage_depths[s]
    wmax = max(widths)
    index = arch[1 + s]
    w = tables(widths)[index]
    depth = tables(depths)[arch[1 + n_stages + s]]
    mid = channel_mask(w, wmax, h.dtype)
    out = channel_mask(w * net.expansion, wmax * net.expansion, h.dtype)
    for j in range(max(depths)):
      # (the first block of a stage is always active: depth >= 1)
      h = Block(wmax, len(widths), net.expansion,
                2 if (j == 0 and s > 0) else 1, j == 0, net.conv_init,
                name=f'stage{s + 1}_{j}')(h, index, mid, out, mode,
                                          jnp.asarray(j < depth))
  pooled = h.mean((1, 2))
  if output == 'logits' or net.is_initializing():  # create the classifier
    logits = nn.Dense(net.num_classes, name='classifier')(pooled)
  if output == 'pooled':
    return pooled, h
  if output == 'embed':
    return pooled
  if output == 'features':
    return h
  if output != 'logits':
    raise ValueError(f'dynresnet output {output!r}: use logits, pooled, '
                     'embed or features')
  return logits
