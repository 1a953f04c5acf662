"""The supernet train step: optimiser masks, sharded == single-device, only
the current block trains, chunks / remat / prefix cache change memory and
not maths, equal settings share one compiled program, and the host sampler
draws what the step used to draw."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bossnax.engine.supernet import block_mask, compiled_step, decay_mask
from bossnax.nn.switchable import merge_path_stats
from bossnax.samplers import make_sampler, step_keys
from conftest import batch, run_steps, sample_archs, tiny_config, trainer


def _names(path):
  return '/'.join(jax.tree_util.keystr((k,), simple=True) for k in path)


@pytest.fixture(scope='module')
def tr():
  return trainer(tiny_config())


def test_masks_exclude_every_norm_and_bias(tr):
  shapes = tr.state_shapes()['params']
  flat = jax.tree_util.tree_flatten_with_path(decay_mask(shapes))[0]
  for path, decays in flat:
    name = _names(path)
    is_norm_or_bias = name.endswith('/scale') or name.endswith('/bias')
    assert decays != is_norm_or_bias, name
  # every batch norm of the model shows up as excluded
  assert sum(_names(p).endswith('bn/scale') for p, d in flat if not d) >= 30
  owned = jax.tree_util.tree_flatten_with_path(
      block_mask(shapes, 1))[0]
  trains = {'/'.join(_names(p).split('/')[:3]) for p, m in owned if m}
  # block 1 of the cifar10 split holds layers 2 (cell1) and 3 (res1)
  assert trains == {'backbone/block1/cell1', 'backbone/block1/res1',
                    'backbone/block1/adapter1_kernel',
                    'backbone/block1/adapter1_bn', 'heads/block1/projector1',
                    'heads/block1/predictor1'}


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


def test_host_sampler_draws_the_paths_the_step_drew():
  """The sampler runs on the host with the step's random stream: fair
  paths of step s are the permutations that key (seed, block, s) gives."""
  c = tiny_config()
  c.train.paths_per_step, c.train.fair = 2, True
  from bossnax.spaces import make_space
  space = make_space(c.space)
  sampler = make_sampler(c, space)
  table = space.block_paths(1)
  drawn = []
  for s in range(4):
    k_path, _ = step_keys(jax.random.key(c.seed), 1, s)
    want = np.stack([jax.random.permutation(
        jax.random.split(jax.random.fold_in(k_path, i), 1)[0], 2)[:2]
        for i in range(2)], 1)
    got = sampler.sample(1, s, table)
    np.testing.assert_array_equal(got, want)
    drawn.append(got.tolist())
  assert len({str(d) for d in drawn}) > 1  # the step number matters


def test_equal_settings_share_one_compiled_step(tr):
  other = trainer(tiny_config())
  assert other.step_fn(1) is tr.step_fn(1)
  c = tiny_config()
  c.train.lr = 1.0
  assert trainer(c).step_fn(1) is not tr.step_fn(1)
  assert compiled_step.cache_info().currsize >= 2


def test_sharded_step_equals_single_device(tr):
  t4 = trainer(tiny_config(), devices=4)
  t1 = trainer(tiny_config(), devices=1)
  s4, m4 = run_steps(t4, 0, 2)
  s1, m1 = run_steps(t1, 0, 2)
  assert np.isfinite(m4['loss'])
  np.testing.assert_allclose(m4['loss'], m1['loss'], rtol=1e-4)
  for a, b in zip(jax.tree.leaves(s4), jax.tree.leaves(s1)):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def test_step_trains_only_the_current_block(tr):
  init = jax.device_get(tr.init_state(0))
  state, _ = run_steps(tr, 1, 1, prefix=np.array([1, 1, 0, 0, 0]))
  mask = block_mask(init['params'], 1)
  for name, tree in (('params', lambda s: s['params']),
                     ('target params', lambda s: s['extra']['params'])):
    changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), tree(init),
                           tree(state))
    for (path, m), c in zip(jax.tree_util.tree_flatten_with_path(mask)[0],
                            jax.tree.leaves(changed)):
      if not m:
        assert not c, f'frozen {name} changed: {_names(path)}'
    assert any(jax.tree.leaves(changed)), name


def test_a_block_compiles_its_step_once(tr):
  # A fresh block's state must enter the step with the shardings the step
  # gives back; otherwise its second step compiles the program again.
  state = tr.start_block(tr.init_state(0), 2)
  step, key = tr.step_fn(2), jax.random.key(0)
  prefix = np.array([1, 0, 1, 0, 0])
  state, _ = step(state, batch(tr, seed=0), key, sample_archs(tr, 2, 0, prefix),
                  None)
  compiled = step._cache_size()
  step(state, batch(tr, seed=1), key, sample_archs(tr, 2, 1, prefix), None)
  assert step._cache_size() == compiled


def _loss_and_grads(t, block, prefix, archs=None):
  """Loss and gradients of the step's objective for one fixed batch: the
  equivalence tests below compare these, not whole steps."""
  from bossnax.engine import supernet
  spec = t.specs[block]
  state = t.init_state(0)
  views = tuple(jnp.asarray(np.random.default_rng(i).normal(
      size=(8, 32, 32, 3)), jnp.float32) for i in range(2))
  archs = sample_archs(t, block, 0, prefix) if archs is None else archs
  forward = lambda *a: supernet.forward_paths(spec, *a, per_path=False)

  @jax.jit
  def fn(params, stats, extra):
    targets, _ = spec.objective.targets(forward, extra, archs, views)
    return jax.value_and_grad(
        lambda p: spec.objective.loss(forward, p, stats, targets,
                                      jnp.arange(len(archs)), archs, views),
        has_aux=True)(params)
  (loss, (_, stats)), grads = fn(state['params'], state['batch_stats'],
                                 state['extra'])
  return jax.device_get((loss, stats, grads))


def _close(a, b, rtol=1e-5, atol=1e-6):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def test_path_chunks_give_the_same_update():
  """Online paths one chunk at a time (bounded memory) == all at once: one
  step each (the chunk loop lives in the step)."""
  states = []
  for chunk in (2, 0):
    c = tiny_config()
    c.train.paths_per_step, c.train.path_chunk = 4, chunk
    states.append(run_steps(trainer(c), 0, 1))
  (s1, m1), (s2, m2) = states
  np.testing.assert_allclose(m1['loss'], m2['loss'], rtol=1e-5)
  _close(s1['params'], s2['params'], rtol=1e-4)


def test_remat_equals_plain(tr):
  """Recomputing activations in the backward pass changes memory, not
  maths: same loss and gradients, and the remat primitive only when asked."""
  c = tiny_config()
  c.train.remat = True
  remat = trainer(c)
  prefix = np.zeros(5, np.int32)
  _close(_loss_and_grads(tr, 0, prefix), _loss_and_grads(remat, 0, prefix))
  state = tr.start_block(tr.init_state(0), 0)
  args = (state, batch(tr), jax.random.key(0), sample_archs(tr, 0, 0, prefix),
          None)
  jaxprs = [str(t.step_fn(0).trace(*args).jaxpr) for t in (tr, remat)]
  assert 'remat' not in jaxprs[0] and 'remat' in jaxprs[1]


@pytest.mark.parametrize('block,prefix', [(1, [1, 1, 0, 0, 0]),
                                          (2, [1, 0, 1, 1, 0])])
def test_prefix_once_per_step_equals_prefix_per_path(tr, block, prefix):
  """The finished blocks' output computed once for all paths gives the
  loss, gradients and statistics of running every path from the image."""
  c = tiny_config()
  c.train.cache_prefix = False
  plain = trainer(c)
  assert tr.specs[block].cache_prefix
  prefix = np.array(prefix, np.int32)
  _close(_loss_and_grads(tr, block, prefix),
         _loss_and_grads(plain, block, prefix), rtol=2e-5, atol=2e-6)


def test_init_state_is_shape_first(tr):
  shapes = tr.state_shapes()
  state = tr.init_state(0)
  assert jax.tree.structure(shapes) == jax.tree.structure(state)
  for s, a in zip(jax.tree.leaves(shapes), jax.tree.leaves(state)):
    assert s.shape == a.shape and s.dtype == a.dtype
  assert set(state) == {'params', 'batch_stats', 'extra', 'opt_state', 'step'}


def test_step_program_batches_paths_and_stays_on_device():
  """The step's structure, which the GPU figures rest on
  (benchmarks/step_structure.py prints it): every batch-norm statistic and
  convolution is one op for all sampled paths, with no loop over them (the
  counts of reductions and convolutions do not grow from 2 paths to 4, and
  the step has the one-path step's while loops: vmap, neither a Python loop
  nor a scan over paths; train.path_chunk=1, a scan, fails this), no host
  callback, the whole state donated; and with the prefix cache an extra
  path costs only its own block, not the finished blocks again."""
  import sys
  from conftest import ROOT
  sys.path.insert(0, str(ROOT / 'benchmarks'))
  import step_structure as st
  c = tiny_config()
  c.train.fair = False
  ops = []
  for lowered in st.lowered_steps(c, 0, paths=(1, 2, 4)):
    ops.append(st.op_counts(lowered))
    assert 'callback' not in lowered.as_text()
    donated = [a.donated for a in jax.tree.leaves(lowered.args_info[0][0])]
    assert donated and all(donated)
  assert ops[1] == ops[2] and ops[0]['while'] == ops[1]['while']
  assert min(ops[1]['reduce'], ops[1]['convolution']) > 20
  # without the cache every path runs the finished blocks again: the extra
  # two paths would cost about what the first two do (measured: 0.98x)
  two, four = st.lowered_steps(c, 2)
  assert 0 < st.flops(four) - st.flops(two) < 0.25 * st.flops(two)
