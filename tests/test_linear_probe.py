"""Supervised linear evaluation (`search.evaluator=linear`) of the session's
tiny BossNAS run: only the classifier learns (the supernet bitwise
unchanged), its vectorised scores equal the per-path loop, they are not the
population centre's, and an unknown evaluator fails in one line."""

import jax
import numpy as np
import pytest

from bossnax import parallel
from bossnax.data.pipeline import Batches
from bossnax.data.sources import make_source
from bossnax.engine.linear_probe import LinearProbe
from bossnax.spaces import make_space

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group('tiny_run')]


def test_linear_probe_trains_only_the_classifier(tiny_run):
  c, _, state, meta = tiny_run
  c = c.copy_and_resolve_references()
  c.search.evaluator, c.search.linear_steps = 'linear', 2
  space = make_space(c.space)
  source = make_source(c.data, seed=c.seed)
  batches = Batches(source, 'train', c.train.batch_size, seed=c.seed)
  mesh = parallel.make_mesh(c.num_devices)
  probe = LinearProbe(c, space, mesh, batches, source.image_shape)
  own = meta['tables']['1'][0]  # what the run scored in block 1
  prefix = np.asarray(own['prefix'][0] + [0, 0, 0], np.int32)
  # On the device, as a restored run holds it: the probe's donated steps
  # must leave the run's arrays alive.
  state = jax.device_put(state, parallel.replicated(mesh))
  trained = jax.device_get(probe.train(state, 1, prefix))
  state = jax.device_get(state)  # fails if the probe deleted its arrays
  for part in ('params', 'batch_stats'):
    for a, b in zip(jax.tree.leaves(state[part]['backbone']),
                    jax.tree.leaves(trained[part]['backbone']), strict=True):
      np.testing.assert_array_equal(a, b)
  init = jax.device_get(probe.init_state(state, 1))['params']['heads']
  moved = lambda k: bool(np.any(
      init[f'block{k}'][f'classifier{k}']['kernel'] !=
      trained['params']['heads'][f'block{k}'][f'classifier{k}']['kernel']))
  assert moved(1) and not moved(0) and not moved(2)

  rng = np.random.default_rng(0)
  val = rng.integers(0, 255, (24, 32, 32, 3), np.uint8)
  y = rng.integers(0, 10, 24).astype(np.int32)
  calib = rng.integers(0, 255, (16, 32, 32, 3), np.uint8)
  ev = probe.evaluator
  table, vec = ev.score_block(trained, 1, prefix, val, calib, val_labels=y)
  _, loop = ev.score_block_loop(trained, 1, prefix, val, calib, val_labels=y)
  np.testing.assert_allclose(vec, loop, rtol=1e-5, atol=1e-6)
  assert own['paths'] == np.asarray(table).tolist()
  assert np.abs(np.asarray(own['losses']) - vec).max() > 1e-3
  batches.close()


def test_unknown_evaluator_fails_in_one_line(tmp_path):
  from bossnax.run import Run
  from conftest import tiny_config
  c = tiny_config(tmp_path)
  c.search.evaluator = 'knn'
  with pytest.raises(ValueError, match="search.evaluator='knn': use one of "
                     'objective, linear'):
    Run(c, str(tmp_path / 'run'), write_metrics=False)


def test_probe_optimises_its_own_way_whatever_the_run_did():
  """The probe's recipe (docs/methods.md) does not inherit a run's
  exponential schedule, per-block rates, warm-up or weight decay."""
  from bossnax import defaults
  from bossnax.engine.linear_probe import probe_config
  from conftest import tiny_config
  c = tiny_config()
  defaults.dna_official(c)
  c.train.block_lr = (0.002, 0.005, 0.005)
  t = probe_config(c).train
  assert (t.schedule, tuple(t.block_lr), t.warmup_epochs, t.weight_decay,
          t.optimizer, t.lr) == ('cosine', (), 0.0, 0.0, 'sgd', 0.1)
