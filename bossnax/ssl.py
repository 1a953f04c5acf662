"""Ensemble bootstrapping: heads, the Siamese model, the loss and the EMA.

Each block has its own projector and predictor (BYOL-style MLPs with batch
norm) on top of its width adapter, since blocks differ in what they output.
The online network predicts, for every sampled path, the *ensemble* of the
target network's projections of the other view over all sampled paths.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from bossnax.nn.switchable import SwitchableBatchNorm


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
  """One side of the Siamese pair: supernet + per-block projector/predictor.

  Returns (projection, prediction) of block `block`'s output for path `arch`.
  """
  backbone: nn.Module
  num_blocks: int
  proj_hidden: int = 512
  proj_dim: int = 128
  pred_hidden: int = 512

  def prefix(self, x, arch, *, block: int, mode: str = 'frozen'):
    """Output of the finished blocks before `block` (no gradient): the same
    for every path of a step, so the trainer and the scorer compute it once.
    Training runs it 'frozen'; the scorer 'calibrate' then 'eval'."""
    return jax.lax.stop_gradient(self.backbone(
        x, arch, block=block - 1, mode=mode, output='features'))

  @nn.compact
  def __call__(self, x, arch, *, block: int, mode: str, start=False):
    proj = [MLP(self.proj_hidden, self.proj_dim, name=f'projector{b}')
            for b in range(self.num_blocks)]
    pred = [MLP(self.pred_hidden, self.proj_dim, name=f'predictor{b}')
            for b in range(self.num_blocks)]
    if self.is_initializing():  # create every block's heads
      embeds, _ = self.backbone(x, arch, mode=mode)
      outs = [(proj[b](e, mode), pred[b](proj[b](e, mode), mode))
              for b, e in enumerate(embeds)]
      return outs[block]
    e = self.backbone(x, arch, block=block, mode=mode, output='embed',
                      start=start)
    z = proj[block](e, mode)
    return z, pred[block](z, mode)


def normalize(x, eps=1e-12):
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum((x * x).sum(-1, keepdims=True),
                                       eps * eps))


def ensemble_target(projections, normalized: bool = True):
  """Mean over paths (axis 0) of the target projections [P, B, D].

  Training uses the mean of L2-normalised projections; the official search
  code averages the raw projections: `normalized=False` gives that.
  """
  if normalized:
    projections = normalize(projections)
  return projections.astype(jnp.float32).mean(0)


def regression_loss(pred, target):
  """Normalised MSE, 2 - 2 cos(pred, target), per example."""
  return 2.0 - 2.0 * (normalize(pred) * normalize(target)).sum(-1)


def ema_momentum(step, total_steps, base=0.99):
  """BYOL's schedule: tau goes from `base` to 1 along a cosine."""
  frac = jnp.clip(step / jnp.maximum(total_steps, 1), 0.0, 1.0)
  return 1.0 - (1.0 - base) * (jnp.cos(jnp.pi * frac) + 1.0) / 2.0


def ema_update(target, online, tau):
  return jax.tree.map(lambda t, o: tau * t + (1.0 - tau) * o, target, online)
