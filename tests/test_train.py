"""The trainer: optimiser masks, sharded == single-device, frozen blocks,
statistics merging, and resume == uninterrupted."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bossnax import parallel
from bossnax.config import load_config_file
from bossnax.nn.switchable import merge_path_stats
from bossnax.spaces import make_space
from bossnax.train import Trainer, block_mask, decay_mask
from conftest import ROOT


def tiny_config(tmp_path=None):
  c = load_config_file(str(ROOT / 'configs' / 'nats_cifar10.py') + ':tiny')
  if tmp_path is not None:  # a small npz so a block is a few steps
    rng = np.random.default_rng(0)
    path = tmp_path / 'tiny.npz'
    np.savez(path, x_train=rng.integers(0, 255, (48, 32, 32, 3), np.uint8),
             y_train=rng.integers(0, 10, 48), x_test=rng.integers(
                 0, 255, (32, 32, 32, 3), np.uint8),
             y_test=rng.integers(0, 10, 32))
    c.data.source = 'npz'
    c.data.path = str(path)
  return c


def _names(path):
  return '/'.join(str(getattr(k, 'key', k)) for k in path)


@pytest.fixture(scope='module')
def trainer8():
  # 4 of the 8 fake devices: on a 2-core machine collectives among 8 device
  # threads dominate the test time, and 4 shards already test the sharding.
  c = tiny_config()
  space = make_space(c.space)
  return Trainer(c, space, parallel.make_mesh(4), steps_per_epoch=4)


def test_masks_exclude_every_norm_and_bias(trainer8):
  shapes = trainer8.state_shapes()['params']
  flat = jax.tree_util.tree_flatten_with_path(decay_mask(shapes))[0]
  for path, decays in flat:
    name = _names(path)
    is_norm_or_bias = name.endswith('/scale') or name.endswith('/bias')
    assert decays != is_norm_or_bias, name
  # every batch norm of the model shows up as excluded
  assert sum(_names(p).endswith('bn/scale') for p, d in flat if not d) >= 30
  owned = jax.tree_util.tree_flatten_with_path(
      block_mask(shapes, trainer8.space, 1))[0]
  trains = {_names(p).split('/')[0] + '/' + _names(p).split('/')[1]
            for p, m in owned if m}
  assert 'backbone/cell1' in trains and 'backbone/res1' in trains
  assert 'predictor1/fc1' in trains and 'backbone/adapter1_kernel' in trains
  assert not any(t.startswith(('backbone/stem', 'backbone/cell0',
                               'backbone/cell2', 'projector0')) for t in trains)


def test_merge_path_stats_by_hand():
  old = {'bn': {'mean': jnp.zeros((3, 2)), 'var': jnp.ones((3, 2)),
                'hits': jnp.zeros(3)}}
  new = {'bn': {  # path 0 used row 0, path 1 row 0, path 2 row 2
      'mean': jnp.array([[[1., 1], [0, 0], [0, 0]], [[3., 3], [0, 0], [0, 0]],
                         [[0., 0], [0, 0], [5, 5]]]),
      'var': jnp.ones((3, 3, 2)),
      'hits': jnp.array([[1., 0, 0], [1, 0, 0], [0, 0, 1]])}}
  merged = merge_path_stats(old, new)['bn']
  np.testing.assert_allclose(merged['mean'], [[2, 2], [0, 0], [5, 5]])
  np.testing.assert_allclose(merged['hits'], 0)


def _batch(trainer, n=16, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.integers(0, 255, (1, n, 32, 32, 3), np.uint8)
  return parallel.global_batch(trainer.mesh, x, batch_axis=1)


def _run_steps(trainer, block, steps, prefix=None):
  state = trainer.start_block(trainer.init_state(0), block)
  table = trainer.space.block_paths(block)
  prefix = np.zeros(5, np.int32) if prefix is None else prefix
  key = jax.random.key(0)
  for s in range(steps):
    state, metrics = trainer.step_fn(block)(state, _batch(trainer, seed=s),
                                            key, table, prefix)
  return jax.device_get(state), jax.device_get(metrics)


def test_sharded_step_equals_single_device(trainer8):
  c = tiny_config()
  t1 = Trainer(c, trainer8.space, parallel.make_mesh(1), steps_per_epoch=4)
  s8, m8 = _run_steps(trainer8, 0, 2)
  s1, m1 = _run_steps(t1, 0, 2)
  assert np.isfinite(m8['loss'])
  np.testing.assert_allclose(m8['loss'], m1['loss'], rtol=1e-4)
  for a, b in zip(jax.tree.leaves(s8), jax.tree.leaves(s1)):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def test_step_trains_only_the_current_block(trainer8):
  init = jax.device_get(trainer8.init_state(0))
  state, _ = _run_steps(trainer8, 1, 1, prefix=np.array([3, 5, 0, 0, 0]))
  mask = block_mask(init['params'], trainer8.space, 1)
  for tree in ('params', 'target_params'):  # the EMA target too
    changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), init[tree],
                           state[tree])
    for path, m in jax.tree_util.tree_flatten_with_path(mask)[0]:
      c = changed
      for k in path:
        c = c[getattr(k, 'key', k)]
      if not m:
        assert not c, f'frozen {tree} changed: {_names(path)}'
    assert any(jax.tree.leaves(changed)), tree


def test_path_chunks_give_the_same_update(trainer8):
  """Online paths one chunk at a time (bounded memory) == all at once."""
  c = tiny_config()
  c.train.paths_per_step = 4
  c.train.path_chunk = 2
  chunked = Trainer(c, trainer8.space, trainer8.mesh, steps_per_epoch=4)
  c2 = tiny_config()
  c2.train.paths_per_step = 4
  whole = Trainer(c2, trainer8.space, trainer8.mesh, steps_per_epoch=4)
  s1, m1 = _run_steps(chunked, 0, 1)
  s2, m2 = _run_steps(whole, 0, 1)
  np.testing.assert_allclose(m1['loss'], m2['loss'], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(s1['params']), jax.tree.leaves(s2['params'])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_remat_step_equals_plain_step(trainer8):
  """Recomputing activations in the backward pass changes memory, not
  maths."""
  c = tiny_config()
  c.train.remat = True
  remat = Trainer(c, trainer8.space, trainer8.mesh, steps_per_epoch=4)
  state = remat.start_block(remat.init_state(0), 0)
  args = (state, _batch(remat, seed=0), jax.random.key(0),
          remat.space.block_paths(0), np.zeros(5, np.int32))
  jaxprs = [str(t.step_fn(0).trace(*args).jaxpr) for t in (trainer8, remat)]
  # the remat primitive wraps the path forward only when asked for
  assert 'remat' not in jaxprs[0] and 'remat' in jaxprs[1], [j.count('remat') for j in jaxprs]
  a, _ = _run_steps(trainer8, 0, 1)
  b, _ = _run_steps(remat, 0, 1)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('block,prefix', [(1, [3, 5, 0, 0, 0]),
                                          (2, [1, 0, 1, 1, 0])])
def test_prefix_once_per_step_equals_prefix_per_path(trainer8, block, prefix):
  """The finished blocks' output computed once for all paths gives the same
  step as running every path from the image (and it is not the same
  program: the cached one runs the prefix once)."""
  c = tiny_config()
  c.train.cache_prefix = False
  plain = Trainer(c, trainer8.space, trainer8.mesh, steps_per_epoch=4)
  assert trainer8.config.train.cache_prefix
  prefix = np.array(prefix, np.int32)
  a, ma = _run_steps(trainer8, block, 2, prefix=prefix)
  b, mb = _run_steps(plain, block, 2, prefix=prefix)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=2e-5, atol=2e-6)
  np.testing.assert_allclose(ma['loss'], mb['loss'], rtol=1e-5)
  state = trainer8.start_block(trainer8.init_state(0), block)
  args = (state, _batch(trainer8, seed=0), jax.random.key(0),
          trainer8.space.block_paths(block), prefix)
  sizes = [len(str(t.step_fn(block).trace(*args).jaxpr))
           for t in (trainer8, plain)]
  assert sizes[0] != sizes[1]
