"""Paths grouped by width run in narrowed supernets: the same maths as the
full-width masked supernet, and stratified slots that stay in their buckets."""

import types

import jax
import numpy as np
import pytest

from bossnax import parallel, width_groups
from bossnax.spaces.nats import NATSSpace
from bossnax.engine import supernet
from conftest import sample_archs, tiny_config, trainer


def _trainer(groups, paths=4):
  c = tiny_config()
  c.train.paths_per_step = paths
  c.train.width_groups = groups
  return trainer(c, devices=1)


@pytest.mark.parametrize('block', [0, 1])
def test_grouped_paths_give_the_full_width_loss_gradients_and_stats(block):
  """Widths 4/8 in 2 groups: slots 0-1 take the block's first layer at
  width 4 in a narrowed net, slots 2-3 at 8; loss, gradients and merged
  batch statistics equal those of all four paths at full width."""
  full, grouped = _trainer(1), _trainer(2)
  state = full.init_state(0)
  archs = np.zeros((4, 5), np.int32)
  archs[:, 3 if block == 0 else 4] = 1  # the wider choice after the block
  archs[:, full.space.block_slice(block)] = [[0, 1], [0, 0], [1, 0], [1, 1]]
  rng = np.random.default_rng(0)
  v1, v2 = (rng.normal(size=(8, 32, 32, 3)).astype(np.float32)
            for _ in range(2))
  target = tuple(rng.normal(size=(8, 16)).astype(np.float32)
                 for _ in range(2))
  out = []
  for t in (full, grouped):
    spec = t.specs[block]
    forward = lambda *a, spec=spec: supernet.forward_paths(spec, *a,
                                                           per_path=False)
    fn = jax.jit(jax.value_and_grad(
        lambda p, st, tg, a, vs, spec=spec, forward=forward:
        spec.objective.loss(forward, p, st, tg, np.arange(4), a, vs),
        has_aux=True))
    (loss, (mean, stats)), grads = fn(state['params'], state['batch_stats'],
                                      target, archs, (v1, v2))
    out.append(jax.device_get((loss, stats, grads)))
  (l1, s1, g1), (l2, s2, g2) = out
  np.testing.assert_allclose(l1, l2, rtol=1e-5)
  # Gradients that are zero in exact arithmetic (a bias before a batch
  # norm) come out as float noise: absolute tolerance from the largest.
  top = max(np.abs(g).max() for g in jax.tree.leaves(g1))
  flat1 = jax.tree_util.tree_flatten_with_path(g1)[0]
  for (path, a), b in zip(flat1, jax.tree.leaves(g2)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * top,
                               err_msg=jax.tree_util.keystr(path))
  assert jax.tree.structure(s1) == jax.tree.structure(s2)
  for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s2)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  assert any(np.abs(g).max() > 0 for g in jax.tree.leaves(g1))


def test_grouped_step_trains():
  t = _trainer(2)
  state = t.start_block(t.init_state(0), 0)
  before = jax.device_get(state['params'])
  x = parallel.global_batch(t.mesh, np.random.default_rng(0).integers(
      0, 255, (1, 16, 32, 32, 3), np.uint8), batch_axis=1)
  state, m = t.step_fn(0)(state, x, jax.random.key(0),
                          sample_archs(t, 0, 0, np.zeros(5, np.int32)), None)
  assert np.isfinite(float(m['loss']))
  moved = jax.tree.map(lambda a, b: bool(np.any(a != b)), before,
                       jax.device_get(state['params']))
  assert moved['backbone']['block0']['cell0']['e01']['conv']['kernel']


def test_stratified_slots_stay_in_their_buckets():
  space = NATSSpace()  # 8 widths per layer
  table = space.block_paths(0)
  seen = set()
  for s in range(20):
    key = jax.random.key(s)
    fair = space.sample_block(key, 0, table, 8, True)
    fair = np.asarray(width_groups.stratify(key, space, 0, fair, 4, True))
    # fair, K = 8 choices: every width once, slots 2g, 2g+1 in bucket g
    assert sorted(fair[:, 0]) == list(range(8))
    assert (fair[:, 0] // 2 == np.arange(8) // 2).all()
    assert sorted(fair[:, 1]) == list(range(8))  # other layers untouched
    uni = space.sample_block(key, 0, table, 4, False)
    uni = np.asarray(width_groups.stratify(key, space, 0, uni, 4, False))
    assert (uni[:, 0] // 2 == np.arange(4)).all()
    seen.update(uni[:, 0].tolist())
  assert seen == set(range(8))  # uniform within each bucket
  groups = width_groups.train_groups(space, 1, 8, 4)
  assert [g[0][2] for g in groups] == [2, 4, 6, 8]  # block 1's first layer
  assert all(g[0][:2] + g[0][3:] == (8, 8, 8, 8) for g in groups)


def test_width_groups_that_cannot_hold_fail_in_one_line():
  space = NATSSpace()
  with pytest.raises(ValueError, match='must divide train.paths_per_step'):
    width_groups.check_training(space, 6, 4, 0)
  with pytest.raises(ValueError, match='must divide the 8 choices'):
    width_groups.check_training(space, 6, 3, 0)
  with pytest.raises(ValueError, match='set train.path_chunk=0'):
    width_groups.check_training(space, 8, 2, 4)
  with pytest.raises(ValueError, match='use 1 \\(no groups\\) or more'):
    width_groups.check_training(space, 8, 0, 0)
  other = types.SimpleNamespace(name='hytra')
  with pytest.raises(ValueError, match='set search.width_groups=1'):
    width_groups.score_groups(other, 0, np.zeros((3, 1), np.int32), 2)
