"""The objective interface the engine calls (see bossnax/objectives/__init__).

An objective is a frozen dataclass: hashable, so a jitted step that takes it
as static configuration compiles once for equal settings.

Inside the train step the engine hands the objective `forward`:

  forward(params, stats, archs, views) -> (outputs, new_stats)

which runs every path of `archs` [K, L] on each view of `views` (a tuple)
and returns the model's outputs stacked over paths, one entry per view, and
the batch statistics merged over the paths. While scoring it hands
`run(side, fn)`, which maps `fn(apply, views, index)` over every path being
scored (in table order) with side `side`'s variables, where
`apply(x)` is the model's output for image batch x.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn


@dataclasses.dataclass(frozen=True)
class Objective:
  name = 'base'
  # Whether the step and the score read labels: the run hands them over
  # only then, so a self-supervised objective cannot depend on them.
  uses_labels = False
  # What the score sees: 'pairs' of fixed augmented views (the
  # self-supervised objectives) or the 'clean' normalised images as both
  # views (the supervised ones).
  score_views = 'pairs'

  # -- model and state -------------------------------------------------------
  def model(self, backbone: nn.Module, num_blocks: int) -> nn.Module:
    """The flax module trained: `backbone` (the supernet) plus heads. Called
    as module(x, arch, block=k, mode=..., start=...); `module.prefix(x,
    arch, block=k, mode=...)` gives the finished blocks' output. It keeps
    the supernet as its attribute `backbone`, whose variables sit under
    'backbone' (width groups narrow it, export cuts paths out of it); the
    heads of block k sit under a `block{k}` group (nn/grouping.py), which
    is how the trainer knows who owns them."""
    raise NotImplementedError

  def init_variables(self, params, batch_stats):
    """(params, batch_stats) of a fresh state from the model's initial ones
    (a teacher's trained variables go in here); unchanged here."""
    return params, batch_stats

  def init_extra(self, params, batch_stats) -> dict[str, Any]:
    """Extra state carried next to the trained variables (none here)."""
    del params, batch_stats
    return {}

  # -- one train step ------------------------------------------------------------
  def mix(self, key, views, labels):
    """(views, labels) of a micro-batch before the step uses them: batch
    mixing (mixup / cutmix) may blend images and turn labels [B] into soft
    targets [B, classes]. Called only for objectives that read labels;
    unchanged here."""
    del key
    return views, labels

  def targets(self, forward, extra, archs, views, labels=None):
    """(regression targets, new extra state) of one micro-batch, computed
    without gradient; None when the loss needs none. `labels` [B] is None
    unless `uses_labels`."""
    del forward, archs, views, labels
    return None, extra

  def loss(self, forward, params, stats, targets, slots, archs, views,
           labels=None):
    """(sum of per-path losses, (mean loss, new batch stats)) of the paths
    `archs` [C, L], which are the sampled slots `slots` [C] (a chunk of the
    K paths: index per-path targets with it)."""
    raise NotImplementedError

  def train_mask(self, owned):
    """The parameters the optimiser updates, from `owned` (the current
    block's): all of them here."""
    return owned

  def update_extra(self, extra, params, step, total_steps, owned):
    """Extra state after the optimiser step; `owned` masks the current
    block's parameters."""
    del params, step, total_steps, owned
    return extra

  def step_metrics(self, step, total_steps) -> dict[str, Any]:
    del step, total_steps
    return {}

  # -- scoring ---------------------------------------------------------------------
  def score_sides(self, state):
    """The (params, batch_stats) pairs the score reads: side i of `run`."""
    return ((state['params'], state['batch_stats']),)

  def calibrated_sides(self, num_sides):
    """The sides whose statistics are recalibrated per path before
    scoring (all here); `run(side, fn)` reads the others' as they are."""
    return tuple(range(num_sides))

  def score_stats(self, stats):
    """The batch statistics a path is scored with, from those calibration
    left (any leading axes): unchanged here."""
    return stats

  def score(self, run, weights, labels=None):
    """Per-path loss summed over one batch of view pairs, [P]; lower is
    better. `weights` [B] is 0 for padding images; `labels` [B] are the
    images' labels (read only where `uses_labels`). Or a dict of per-path
    sums: 'loss' ranks, the others (e.g. 'correct') are reported as means."""
    raise NotImplementedError

  def variables(self, state, which: str = 'online'):
    """{'params', 'batch_stats'} of the model for export."""
    if which != 'online':
      raise ValueError(f'--weights={which}: the {self.name} objective keeps '
                       'only online weights')
    return {'params': state['params'], 'batch_stats': state['batch_stats']}
