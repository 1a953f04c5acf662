"""Methods are stage plans on the shared engine: --config.method picks one,
an unknown one fails in one line, and single-path bootstrapping (the
smallest method: an objective and a five-line plan) trains and scores
through the same step and evaluator as BossNAS."""

import jax
import numpy as np
import pytest

from bossnax import parallel
from bossnax.engine.evaluator import Evaluator
from bossnax.methods import METHODS, build_method
from bossnax.spaces import make_space
from conftest import run_steps, tiny_config, trainer, write_teacher


def test_every_method_builds_a_block_by_block_plan(tmp_path):
  c = tiny_config()
  space = make_space(c.space)
  c.distill.teacher = str(write_teacher(c, '8:8:8:8:8', tmp_path / 't'))
  c.greedy.keep = 4  # greedynas: rounds of 2 steps of paths_per_step 2
  for name in METHODS:
    c.method = name
    m = build_method(c, space)
    assert m.name == name
    if name in ('supervised_oneshot', 'greedynas', 'autoformer',
                'data'):  # one
      # stage, whole paths
      assert [(s.block, s.whole) for s in m.stages] == [(0, True)]
      continue
    assert [s.block for s in m.stages] == [0, 1, 2]
  c.method, c.greedy.keep = 'greedynas', 5
  with pytest.raises(ValueError, match='set keep to a multiple of '
                     'paths_per_step'):
    build_method(c, space)
  c.method = 'darts'
  with pytest.raises(ValueError, match="method 'darts': use one of autoformer, bossnas"):
    build_method(c, space)


def test_single_path_trains_its_own_targets():
  """One step of block 0: the weights move, and the loss is not
  BossNAS's on the same batch and paths (the targets differ)."""
  c = tiny_config()
  c.train.warmup_epochs = 0.0  # the first step already moves the weights
  losses = {}
  for name in ('bossnas', 'single_path'):
    c.method = name
    tr = trainer(c)
    before = jax.device_get(tr.init_state(0)['params'])
    state, m = run_steps(tr, 0, 1)
    assert np.isfinite(m['loss'])
    moved = jax.tree.map(lambda a, b: bool(np.any(a != b)), before,
                         state['params'])
    assert moved['backbone']['block0']['cell0']['e01']['conv']['kernel'], name
    losses[name] = float(m['loss'])
  assert abs(losses['bossnas'] - losses['single_path']) > 1e-4


@pytest.mark.slow
@pytest.mark.xdist_group('tiny_run')
def test_single_path_scores_vectorised_equal_loop(tiny_run):
  """The evaluator runs the single-path score as it runs the population
  centre: vectorised equals the per-path loop."""
  c, _, state, _ = tiny_run
  c = c.copy_and_resolve_references()
  c.method = 'single_path'
  tr = trainer(c)
  state = jax.device_put(state, parallel.replicated(tr.mesh))
  ev = Evaluator(c, tr.space, tr.model, tr.objective, tr.mesh)
  rng = np.random.default_rng(0)
  val = rng.integers(0, 255, (32, 32, 32, 3), np.uint8)
  calib = rng.integers(0, 255, (16, 32, 32, 3), np.uint8)
  prefix = np.array([1, 1, 0, 0, 0], np.int32)
  table, vec = ev.score_block(state, 1, prefix, val, calib)
  _, loop = ev.score_block_loop(state, 1, prefix, val, calib)
  np.testing.assert_allclose(vec, loop, rtol=1e-4, atol=1e-5)
  c.method = 'bossnas'
  tr2 = trainer(c)
  _, ens = Evaluator(c, tr2.space, tr2.model, tr2.objective,
                     tr2.mesh).score_block(state, 1, prefix, val, calib)
  assert np.abs(vec - ens).max() > 1e-4
