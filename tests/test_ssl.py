"""Ensemble target, loss and EMA schedule against hand computations."""

import jax.numpy as jnp
import numpy as np
import pytest

from bossnax import ssl


def test_ensemble_target_and_loss_by_hand():
  # Two paths, one example, 2-D projections.
  z = jnp.array([[[3.0, 4.0]], [[0.0, 2.0]]])  # [P=2, B=1, D=2]
  # normalised: (0.6, 0.8) and (0, 1) -> mean (0.3, 0.9)
  np.testing.assert_allclose(ssl.ensemble_target(z), [[0.3, 0.9]], rtol=1e-6)
  # raw mean (the official search centre): (1.5, 3.0)
  np.testing.assert_allclose(ssl.ensemble_target(z, normalized=False),
                             [[1.5, 3.0]], rtol=1e-6)
  pred = jnp.array([[1.0, 0.0]])
  # 2 - 2 cos(pred, (0.3, 0.9)) = 2 - 2 * 0.3 / sqrt(0.9)
  expected = 2 - 2 * 0.3 / np.sqrt(0.3 ** 2 + 0.9 ** 2)
  np.testing.assert_allclose(ssl.regression_loss(pred, ssl.ensemble_target(z)),
                             [expected], rtol=1e-6)
  # scale invariance of the normalised MSE
  np.testing.assert_allclose(ssl.regression_loss(5 * pred, z[0]),
                             ssl.regression_loss(pred, z[0]), rtol=1e-6)
  assert float(ssl.regression_loss(z[0], 7 * z[0])[0]) == pytest.approx(0.0,
                                                                       abs=1e-6)


def test_ema_momentum_schedule():
  assert float(ssl.ema_momentum(0, 100)) == pytest.approx(0.99)
  assert float(ssl.ema_momentum(50, 100)) == pytest.approx(0.995)
  assert float(ssl.ema_momentum(100, 100)) == pytest.approx(1.0)
  t = {'a': jnp.array([1.0])}
  o = {'a': jnp.array([3.0])}
  assert float(ssl.ema_update(t, o, 0.75)['a'][0]) == pytest.approx(1.5)
