"""Block-wise supervised classification (the BossNAS paper's "Supv. class."
baseline, Table 5).

Each block has a linear classifier on its pooled, width-adapted output (the
same embedding the self-supervised heads read). A step trains the sampled
paths of the current block with cross-entropy on the labels of one augmented
view; a path is scored by its validation cross-entropy on clean (only
normalised) images, its batch statistics recalibrated first (its accuracy
is reported beside it). The finished
blocks are frozen, as in every block-wise method.

With `frozen_backbone` the same objective is the supervised linear
evaluation of a trained supernet (engine/linear_probe.py): only the
classifiers learn; the supernet's weights and batch statistics stay as they
are (no gradient, statistics put back after every forward pass).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from bossnax.data.augment import mix_batch
from bossnax.nn.grouping import embed_heads
from bossnax.objectives.base import Objective


class BlockClassifiers(nn.Module):
  """Supernet + one linear classifier per block: the logits of block
  `block`'s output for path `arch`."""
  backbone: nn.Module
  num_blocks: int
  num_classes: int
  grouped: bool = True

  def prefix(self, x, arch, *, block: int, mode: str = 'frozen'):
    """The finished blocks' output (no gradient), as bootstrap.Siamese."""
    return jax.lax.stop_gradient(self.backbone(
        x, arch, block=block - 1, mode=mode, output='features'))

  @nn.compact
  def __call__(self, x, arch, *, block: int, mode: str, start=False):
    head = lambda b, e: nn.Dense(self.num_classes, name=f'classifier{b}')(e)
    return embed_heads(self, head, x, arch, block=block, mode=mode,
                       start=start)


def soft_targets(labels, num_classes: int, smoothing: float = 0.0):
  """One-hot targets of int labels, smoothed by `smoothing` (optax)."""
  target = jax.nn.one_hot(labels, num_classes)
  return optax.smooth_labels(target, smoothing) if smoothing else target


def cross_entropy(logits, labels, num_classes: int, smoothing: float = 0.0):
  """Per-example cross-entropy against int labels (smoothed by
  `smoothing`) or, when `labels` has the class axis, soft targets as they
  are (a mixed batch's: smoothed before mixing)."""
  target = (labels if labels.ndim == logits.ndim else
            soft_targets(labels, num_classes, smoothing))
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), target)


@dataclasses.dataclass(frozen=True)
class BlockSupervised(Objective):
  name = 'supervised'
  uses_labels = True
  score_views = 'clean'
  num_classes: int = 10
  label_smoothing: float = 0.0
  frozen_backbone: bool = False
  # Batch mixing of the training view (train.mixup_alpha etc., the DeiT
  # recipe's; 0 = off): bossnax.data.augment.mix_batch.
  mixup_alpha: float = 0.0
  cutmix_alpha: float = 0.0
  mix_switch_prob: float = 0.5
  mix_prob: float = 1.0

  def __post_init__(self):
    if not 0.0 <= self.label_smoothing < 1.0:
      raise ValueError(f'train.label_smoothing={self.label_smoothing}: use a '
                       'value in [0, 1)')

  @classmethod
  def from_config(cls, config, space, **kw):
    """The objective with the run's train.* label smoothing and mixing."""
    t = config.train
    return cls(num_classes=space.num_classes,
               label_smoothing=float(t.get('label_smoothing', 0.0)),
               mixup_alpha=float(t.get('mixup_alpha', 0.0)),
               cutmix_alpha=float(t.get('cutmix_alpha', 0.0)),
               mix_switch_prob=float(t.get('mix_switch_prob', 0.5)),
               mix_prob=float(t.get('mix_prob', 1.0)), **kw)

  def mix(self, key, views, labels):
    if (self.mixup_alpha <= 0 and self.cutmix_alpha <= 0) or (
        self.mix_prob <= 0):
      return views, labels
    # the training view is views[0] (the loss reads one view)
    x, targets, _ = mix_batch(
        key, views[0], soft_targets(labels, self.num_classes,
                                    self.label_smoothing),
        self.mixup_alpha, self.cutmix_alpha, self.mix_switch_prob,
        self.mix_prob)
    return (x, *views[1:]), targets

  def model(self, backbone, num_blocks):
    return BlockClassifiers(backbone, num_blocks, self.num_classes)

  def loss(self, forward, params, stats, targets, slots, archs, views,
           labels=None):
    del targets, slots
    if labels is None:
      raise ValueError('the supervised objective needs labels in the batch')
    if self.frozen_backbone:
      params = {**params,
                'backbone': jax.lax.stop_gradient(params['backbone'])}
    # One augmented view: a classifier needs no second one (it would only
    # double the step's cost).
    (logits,), new_stats = forward(params, stats, archs, views[:1])
    if self.frozen_backbone:
      new_stats = {**new_stats, 'backbone': stats['backbone']}
    loss = cross_entropy(logits, labels[None], self.num_classes,
                         self.label_smoothing).mean(1)  # [C]
    return loss.sum(), (loss.mean(), new_stats)

  def train_mask(self, owned):
    if not self.frozen_backbone:
      return owned
    return {**owned, 'backbone': jax.tree.map(lambda _: False,
                                              owned['backbone'])}

  def score(self, run, weights, labels=None):
    if labels is None:
      raise ValueError('the supervised objective scores with labels')

    def one(apply, views, i):
      del i
      logits = apply(views[0])
      ce = cross_entropy(logits, labels, self.num_classes)
      hit = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
      return {'loss': (ce * weights).sum(), 'correct': (hit * weights).sum()}
    return run(0, one)


class WholeNetwork(nn.Module):
  """The supernet as one network: the logits of path `arch` through every
  block and the space's own classifier, whatever `block` says."""
  backbone: nn.Module

  def __call__(self, x, arch, *, block: int, mode: str, start=False):
    del block, start  # one stage: the whole network from the image
    return self.backbone(x, arch, mode=mode, output='logits')


@dataclasses.dataclass(frozen=True)
class OneShotSupervised(BlockSupervised):
  """SPOS-style one-shot supervised training (the paper's Table 6
  baseline): whole paths sampled uniformly, one classifier at the end,
  every parameter trained at every step; a path is scored by the whole
  network's validation cross-entropy."""
  name = 'supervised_oneshot'

  def model(self, backbone, num_blocks):
    del num_blocks
    return WholeNetwork(backbone)

  def train_mask(self, owned):
    return jax.tree.map(lambda _: True, owned)
