"""Ensemble bootstrapping (BossNAS Eq. 3-6).

Training: every sampled path predicts, on one view, the mean of the target's
L2-normalised projections of all sampled paths on the other view.
Scoring (population centre): with fixed view pairs, every path of a block is
scored against the centre of the target projections of all paths scored
together:

  centre(v)  = mean_p  n(z_p^target(v))       (n = L2 normalisation; the
                                               official code averages raw z:
                                               centre='raw')
  score_p    = sum_x  [ L(q_p(v1), centre(v2)) + L(q_p(v2), centre(v1)) ]
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from bossnax.objectives.bootstrap import Bootstrap, normalize, regression_loss


def ensemble_target(projections, normalized: bool = True):
  """Mean over paths (axis 0) of the target projections [P, B, D]."""
  if normalized:
    projections = normalize(projections)
  return projections.astype(jnp.float32).mean(0)


@dataclasses.dataclass(frozen=True)
class EnsembleBootstrap(Bootstrap):
  name = 'ensemble_bootstrap'
  centre: str = 'normalized'  # search: centre of 'normalized' | 'raw' z

  def __post_init__(self):
    super().__post_init__()
    if self.centre not in ('normalized', 'raw'):
      raise ValueError(f'search.centre={self.centre!r}: use normalized or '
                       'raw')

  def targets(self, forward, extra, archs, views, labels=None):
    del labels  # self-supervised
    (z1, z2), extra = self._target_projections(forward, extra, archs, views)
    t = (ensemble_target(z1), ensemble_target(z2))
    return jax.lax.stop_gradient(t), extra

  def _regress(self, targets, slots):
    del slots  # one ensemble target for every path
    return targets[0][None], targets[1][None]

  def score(self, run, weights, labels=None):
    del labels  # self-supervised
    norm = normalize if self.centre == 'normalized' else (
        lambda z: z.astype(jnp.float32))
    z1, z2 = run(1, lambda apply, views, i: tuple(
        norm(apply(x)[0]) for x in views))
    c1, c2 = z1.mean(0), z2.mean(0)

    def online(apply, views, i):
      del i
      q1, q2 = apply(views[0])[1], apply(views[1])[1]
      loss = regression_loss(q1, c2) + regression_loss(q2, c1)
      return (loss * weights).sum()
    return run(0, online)
