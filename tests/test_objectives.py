"""Objectives against hand computations: the ensemble target, the loss, the
EMA schedule and update, and the scores of ensemble and single-path
bootstrapping on made-up projections."""

import jax.numpy as jnp
import numpy as np
import pytest

from bossnax.objectives.bootstrap import (ema_momentum, normalize,
                                          regression_loss)
from bossnax.objectives.ensemble import EnsembleBootstrap, ensemble_target
from bossnax.objectives.single_path import SinglePathBootstrap


def test_ensemble_target_and_loss_by_hand():
  # Two paths, one example, 2-D projections.
  z = jnp.array([[[3.0, 4.0]], [[0.0, 2.0]]])  # [P=2, B=1, D=2]
  # normalised: (0.6, 0.8) and (0, 1) -> mean (0.3, 0.9)
  np.testing.assert_allclose(ensemble_target(z), [[0.3, 0.9]], rtol=1e-6)
  # raw mean (the official search centre): (1.5, 3.0)
  np.testing.assert_allclose(ensemble_target(z, normalized=False),
                             [[1.5, 3.0]], rtol=1e-6)
  pred = jnp.array([[1.0, 0.0]])
  # 2 - 2 cos(pred, (0.3, 0.9)) = 2 - 2 * 0.3 / sqrt(0.9)
  expected = 2 - 2 * 0.3 / np.sqrt(0.3 ** 2 + 0.9 ** 2)
  np.testing.assert_allclose(regression_loss(pred, ensemble_target(z)),
                             [expected], rtol=1e-6)
  # scale invariance of the normalised MSE
  np.testing.assert_allclose(regression_loss(5 * pred, z[0]),
                             regression_loss(pred, z[0]), rtol=1e-6)
  assert float(regression_loss(z[0], 7 * z[0])[0]) == pytest.approx(0.0,
                                                                    abs=1e-6)


def test_ema_momentum_schedule_and_update():
  assert float(ema_momentum(0, 100)) == pytest.approx(0.99)
  assert float(ema_momentum(50, 100)) == pytest.approx(0.995)
  assert float(ema_momentum(100, 100)) == pytest.approx(1.0)
  assert float(ema_momentum(150, 100)) == pytest.approx(1.0)  # clipped
  obj = EnsembleBootstrap()
  extra = {'params': {'a': jnp.array([1.0]), 'b': jnp.array([1.0])},
           'batch_stats': {}}
  online = {'a': jnp.array([3.0]), 'b': jnp.array([3.0])}
  owned = {'a': True, 'b': False}  # only block-owned targets move
  # step 50 of 100: tau = 0.995 -> 0.995 * 1 + 0.005 * 3
  new = obj.update_extra(extra, online, 50, 100, owned)['params']
  assert float(new['a'][0]) == pytest.approx(1.01, abs=1e-6)
  assert float(new['b'][0]) == 1.0


# Made-up model outputs for `score`: side 0 (online) gives predictions q,
# side 1 (target) projections z; path p's output on view v is table[p][v].
Z = np.array([[[[3., 4.]], [[0., 1.]]], [[[0., 2.]], [[1., 0.]]]])  # [P, V, B, D]
Q = np.array([[[[1., 0.]], [[1., 1.]]], [[[0., 1.]], [[2., 1.]]]])


def _run(side, fn):
  del side
  outs = []
  for p in range(2):
    views = ('v0', 'v1')
    apply = lambda x, p=p: (jnp.asarray(Z[p][views.index(x)]),
                            jnp.asarray(Q[p][views.index(x)]))
    # both sides see the same made-up (z, q); the score reads z of the
    # target side and q of the online side
    outs.append(fn(apply, views, p))
  import jax
  return jax.tree.map(lambda *x: jnp.stack(x), *outs)


def _loss(q, t):
  q, t = np.asarray(q, float), np.asarray(t, float)
  return 2 - 2 * q @ t / np.linalg.norm(q) / np.linalg.norm(t)


def test_population_centre_score_by_hand():
  w = jnp.array([1.0])
  got = np.asarray(EnsembleBootstrap().score(_run, w))
  n = lambda v: v / np.linalg.norm(v)
  c0 = (n(Z[0][0][0]) + n(Z[1][0][0])) / 2  # centre of view 0
  c1 = (n(Z[0][1][0]) + n(Z[1][1][0])) / 2
  want = [_loss(Q[p][0][0], c1) + _loss(Q[p][1][0], c0) for p in range(2)]
  np.testing.assert_allclose(got, want, rtol=1e-5)
  raw = np.asarray(EnsembleBootstrap(centre='raw').score(_run, w))
  r0, r1 = Z[:, 0, 0].mean(0), Z[:, 1, 0].mean(0)
  want = [_loss(Q[p][0][0], r1) + _loss(Q[p][1][0], r0) for p in range(2)]
  np.testing.assert_allclose(raw, want, rtol=1e-5)
  np.testing.assert_allclose(EnsembleBootstrap().score(_run, 0 * w), 0)
  with pytest.raises(ValueError, match='use normalized or raw'):
    EnsembleBootstrap(centre='mean')


def test_single_path_score_by_hand():
  got = np.asarray(SinglePathBootstrap().score(_run, jnp.array([1.0])))
  want = [_loss(Q[p][0][0], Z[p][1][0]) + _loss(Q[p][1][0], Z[p][0][0])
          for p in range(2)]
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # and it is not the ensemble's score
  assert np.abs(got - np.asarray(EnsembleBootstrap().score(
      _run, jnp.array([1.0])))).max() > 1e-3


def test_single_path_regresses_onto_its_own_target():
  """Training targets: ensemble = one mean for every path; single path =
  each slot its own normalised projection."""
  z = jnp.asarray(np.random.default_rng(0).normal(size=(3, 2, 4)),
                  jnp.float32)  # [K, B, D]
  forward = lambda params, stats, archs, views: (((z, z), (z, z)), stats)
  extra = {'params': {}, 'batch_stats': {}}
  t_ens, _ = EnsembleBootstrap().targets(forward, extra, None, (0, 1))
  t_one, _ = SinglePathBootstrap().targets(forward, extra, None, (0, 1))
  np.testing.assert_allclose(t_ens[0], normalize(z).mean(0), rtol=1e-6)
  slots = jnp.array([2, 0])
  got = SinglePathBootstrap()._regress(t_one, slots)[1]
  np.testing.assert_allclose(got, normalize(z)[np.array([2, 0])], rtol=1e-6)
