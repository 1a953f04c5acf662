"""Bootstrapping (BYOL): per-block heads, an online/target pair, the loss.

Each block has its own projector and predictor (BYOL MLPs with batch norm)
on its width adapter, since blocks differ in what they output. The target
network is the EMA of the online one (the objective's extra state). What a
path regresses onto is the subclass's choice: the ensemble of all sampled
paths (BossNAS, ensemble.py) or its own target (single_path.py).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from bossnax.nn.grouping import embed_heads
from bossnax.nn.switchable import SwitchableBatchNorm
from bossnax.objectives.base import Objective


class MLP(nn.Module):
  """Linear - BN - ReLU - Linear (BYOL's projector/predictor)."""
  hidden: int
  out: int

  @nn.compact
  def __call__(self, x, mode):
    x = nn.Dense(self.hidden, name='fc1')(x)
    x = SwitchableBatchNorm(1, self.hidden, name='bn')(x, 0, mode)
    return nn.Dense(self.out, name='fc2')(nn.relu(x))


class Siamese(nn.Module):
  """One side of the pair: supernet + per-block projector and predictor.

  Returns (projection, prediction) of block `block`'s output for path `arch`.
  """
  backbone: nn.Module
  num_blocks: int
  proj_hidden: int = 512
  proj_dim: int = 128
  pred_hidden: int = 512
  grouped: bool = True  # False: the layout initial values are drawn in

  def prefix(self, x, arch, *, block: int, mode: str = 'frozen'):
    """Output of the finished blocks before `block` (no gradient): the same
    for every path of a step, so the trainer and the scorer compute it once.
    Training runs it 'frozen'; the scorer 'calibrate' then 'eval'."""
    return jax.lax.stop_gradient(self.backbone(
        x, arch, block=block - 1, mode=mode, output='features'))

  @nn.compact
  def __call__(self, x, arch, *, block: int, mode: str, start=False):
    # The heads of block b live under heads/block{b} (nn/grouping.py).
    def head(b, e):
      z = MLP(self.proj_hidden, self.proj_dim, name=f'projector{b}')(e, mode)
      return z, MLP(self.pred_hidden, self.proj_dim,
                    name=f'predictor{b}')(z, mode)

    return embed_heads(self, head, x, arch, block=block, mode=mode,
                       start=start)


def normalize(x, eps=1e-12):
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum((x * x).sum(-1, keepdims=True),
                                       eps * eps))


def regression_loss(pred, target):
  """Normalised MSE, 2 - 2 cos(pred, target), per example."""
  return 2.0 - 2.0 * (normalize(pred) * normalize(target)).sum(-1)


def ema_momentum(step, total_steps, base=0.99):
  """BYOL's schedule: tau goes from `base` to 1 along a cosine (1 - tau is
  a cosine decay to 0 over the block)."""
  return 1.0 - optax.cosine_decay_schedule(1.0 - base, max(total_steps, 1))(
      step)


@dataclasses.dataclass(frozen=True)
class Bootstrap(Objective):
  """Heads, EMA target and the regression loss; subclasses say what each
  path regresses onto (`targets`, `_regress`) and how paths are scored."""
  proj_hidden: int = 4096
  proj_dim: int = 256
  pred_hidden: int = 4096
  ema_base: float = 0.99
  # The predictor's BN while scoring: 'recalibrate' (as every other BN) or
  # 'reset' to mean 0 / variance 1, as the official metric is measured.
  predictor_bn: str = 'recalibrate'

  def __post_init__(self):
    if self.predictor_bn not in ('recalibrate', 'reset'):
      raise ValueError(f'search.predictor_bn={self.predictor_bn!r}: use '
                       'recalibrate or reset')

  def model(self, backbone, num_blocks):
    return Siamese(backbone, num_blocks, self.proj_hidden, self.proj_dim,
                   self.pred_hidden)

  def init_extra(self, params, batch_stats):
    # Online and target start equal but must not share buffers (the step
    # donates the state).
    return {'params': jax.tree.map(jnp.copy, params),
            'batch_stats': jax.tree.map(jnp.copy, batch_stats)}

  def _target_projections(self, forward, extra, archs, views):
    (o1, o2), stats = forward(extra['params'], extra['batch_stats'], archs,
                              views)
    return (o1[0], o2[0]), {**extra, 'batch_stats': stats}

  def loss(self, forward, params, stats, targets, slots, archs, views,
           labels=None):
    del labels  # self-supervised
    (o1, o2), new_stats = forward(params, stats, archs, views)
    t1, t2 = self._regress(targets, slots)
    loss = (regression_loss(o1[1], t2) + regression_loss(o2[1], t1)).mean(1)
    # Gradients add up over paths, as each path's backward does in the
    # official code; the logged loss is the mean over paths.
    return loss.sum(), (loss.mean(), new_stats)

  def update_extra(self, extra, params, step, total_steps, owned):
    tau = ema_momentum(step, total_steps, self.ema_base)
    moved = optax.incremental_update(params, extra['params'], 1.0 - tau)
    # Only the current block's target moves: finished blocks stay as they
    # were scored, so the final state re-scores them exactly.
    return {**extra, 'params': jax.tree.map(
        lambda m, new, old: jnp.where(m, new, old), owned, moved,
        extra['params'])}

  def step_metrics(self, step, total_steps):
    return {'tau': ema_momentum(step, total_steps, self.ema_base)}

  def score_stats(self, stats):
    if self.predictor_bn == 'recalibrate':
      return stats

    def reset(path, x):
      names = [jax.tree_util.keystr((k,), simple=True) for k in path]
      if names[0] == 'heads' and any(n.startswith('predictor')
                                     for n in names):
        if names[-1] == 'mean':
          return jnp.zeros_like(x)
        if names[-1] == 'var':
          return jnp.ones_like(x)
      return x
    return jax.tree_util.tree_map_with_path(reset, stats)

  def score_sides(self, state):
    return ((state['params'], state['batch_stats']),
            (state['extra']['params'], state['extra']['batch_stats']))

  def variables(self, state, which='online'):
    if which == 'online':
      return {'params': state['params'], 'batch_stats': state['batch_stats']}
    if which == 'target':
      return dict(state['extra'])
    raise ValueError(f'--weights={which}: use online, target or none')
