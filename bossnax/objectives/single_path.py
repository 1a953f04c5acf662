"""Single-path bootstrapping: each sampled path predicts its own target's
projection of the other view (BYOL per path), the paper's ablation of the
ensemble. Scored the same way: a path's loss against its own target on fixed
view pairs."""

from __future__ import annotations

import dataclasses

import jax

from bossnax.objectives.bootstrap import Bootstrap, normalize, regression_loss


@dataclasses.dataclass(frozen=True)
class SinglePathBootstrap(Bootstrap):
  name = 'single_path_bootstrap'

  def targets(self, forward, extra, archs, views, labels=None):
    del labels  # self-supervised
    (z1, z2), extra = self._target_projections(forward, extra, archs, views)
    return jax.lax.stop_gradient((normalize(z1), normalize(z2))), extra

  def _regress(self, targets, slots):
    return targets[0][slots], targets[1][slots]  # [C, B, D] each

  def score(self, run, weights, labels=None):
    del labels  # self-supervised
    z1, z2 = run(1, lambda apply, views, i: tuple(
        apply(x)[0] for x in views))

    def online(apply, views, i):
      q1, q2 = apply(views[0])[1], apply(views[1])[1]
      loss = regression_loss(q1, z2[i]) + regression_loss(q2, z1[i])
      return (loss * weights).sum()
    return run(0, online)
