"""DNA's block-wise distillation (method=dna) on a tiny NATS teacher: the
score equals a hand computation from the teacher and supernet applied
separately, the teacher stays bitwise frozen while the student block and
its projection learn, and a missing or unusable teacher fails in one
line."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bossnax.data import augment
from bossnax.engine.evaluator import Evaluator
from bossnax.methods import build_method
from bossnax.spaces import make_space
from conftest import batch, sample_archs, tiny_config, trainer, write_teacher


@pytest.fixture(scope='module')
def dna(tmp_path_factory):
  c = tiny_config()
  c.method = 'dna'
  c.train.warmup_epochs = 0.0  # the first step moves the weights
  c.search.recalibrate_bn = False  # the hand computation reads the state
  c.distill.teacher = str(write_teacher(
      c, '8:8:8:8:8', tmp_path_factory.mktemp('teacher') / 'widest'))
  return c, trainer(c)


def test_score_is_the_teachers_block_error_by_hand(dna):
  c, tr = dna
  assert tr.objective.project == (8, 8, 8)  # NATS widths are searched
  state = tr.init_state(0)
  prefix = np.array([1, 0, 0, 0, 0], np.int32)
  rng = np.random.default_rng(0)
  val = rng.integers(0, 255, (16, 32, 32, 3), np.uint8)
  ev = Evaluator(c, tr.space, tr.model, tr.objective, tr.mesh)
  table, got = ev.score_block(state, 1, prefix, val, val[:16])

  s = jax.device_get(state)
  teacher, net = tr.model.teacher, tr.model.backbone
  tv = {k: s[k]['teacher'] for k in ('params', 'batch_stats')}
  sv = {k: s[k]['backbone'] for k in ('params', 'batch_stats')}
  x = augment.eval_view(jnp.asarray(val), c.augment.mean, c.augment.std)
  tarch = jnp.asarray(tr.model.teacher_arch)
  h = teacher.apply(tv, x, tarch, block=0, mode='eval', output='features')
  target = np.asarray(teacher.apply(tv, h, tarch, block=1, mode='eval',
                                    output='features', start=True))
  proj = s['params']['heads']['block1']['projection1']
  for path, loss in zip(table, got):
    arch = prefix.copy()
    arch[tr.space.block_slice(1)] = path
    f = np.asarray(net.apply(sv, h, jnp.asarray(arch), block=1, mode='eval',
                             output='features', start=True))
    student = np.einsum('bhwc,cd->bhwd', f, proj['kernel'][0, 0]) + proj[
        'bias']
    np.testing.assert_allclose(loss, ((student - target) ** 2).mean(),
                               rtol=1e-4)
  assert np.ptp(got) > 0  # the paths differ


def test_the_teacher_stays_frozen(dna):
  c, tr = dna
  init = tr.init_state(0)
  before = jax.device_get(init)
  prefix = np.array([1, 1, 0, 0, 0], np.int32)
  state = tr.start_block(init, 1)
  new, m = tr.step_fn(1)(state, batch(tr), jax.random.key(0),
                         sample_archs(tr, 1, 0, prefix), None)
  after = jax.device_get(new)
  assert np.isfinite(float(m['loss']))
  for part in ('params', 'batch_stats'):
    for a, b in zip(jax.tree.leaves(before[part]['teacher']),
                    jax.tree.leaves(after[part]['teacher']), strict=True):
      np.testing.assert_array_equal(a, b)
  moved = lambda t: any(bool(np.any(a != b)) for a, b in zip(
      jax.tree.leaves(t(before['params'])), jax.tree.leaves(t(
          after['params']))))
  assert moved(lambda p: p['backbone']['block1'])
  assert moved(lambda p: p['heads']['block1'])
  assert not moved(lambda p: p['backbone']['block0'])


def test_a_missing_or_unusable_teacher_fails_in_one_line(tmp_path):
  c = tiny_config()
  c.method = 'dna'
  space = make_space(c.space)
  with pytest.raises(ValueError, match='needs a teacher: pass '
                     '--config.distill.teacher'):
    build_method(c, space)
  c.distill.teacher = str(tmp_path)
  with pytest.raises(ValueError, match='holds neither spec.json'):
    build_method(c, space)
  c.search.width_groups = 2
  with pytest.raises(ValueError, match='set train.width_groups=1 and '
                     'search.width_groups=1'):
    build_method(c, space)
  c.search.width_groups = 1
  c.distill.teacher = str(write_teacher(c, '8:4:8:8:8', tmp_path / 'narrow'))
  with pytest.raises(ValueError, match="block 1 takes the teacher's block-0 "
                     r'output \(4 channels\) but the supernet reads 8'):
    build_method(c, space)
  c.distill.teacher = str(write_teacher(c, '8:8:8:8:4', tmp_path / 't'))
  c.distill.projection = 'none'
  with pytest.raises(ValueError, match='set distill.projection=auto'):
    build_method(c, space)


@pytest.mark.slow
def test_hytra_block_reads_and_regresses_the_teachers_scale(tmp_path):
  """HyTra: block 2 of every path starts from the teacher's block-1 map in
  its scale's slot (zeros at the others) and is scored by the MSE of its
  slot at the teacher's block-2 scale, by hand; blocks must end where the
  teacher's do."""
  from bossnax.config import load_config_file
  from conftest import ROOT
  c = load_config_file(str(ROOT / 'configs/hytra_cifar.py') + ':tiny')
  c.method = 'dna'
  c.search.recalibrate_bn = False
  c.distill.teacher = str(write_teacher(c, '[[],[1],[1],[1,1]]',
                                        tmp_path / 'teacher'))
  with pytest.raises(ValueError, match=r'set --config.space.block_ends='
                     r'"\(1, 2, 3, 3\)"'):
    build_method(c, make_space(c.space))
  c.space.block_ends = (1, 2, 3, 3)
  tr = trainer(c, image_shape=(16, 16, 3))
  assert tr.objective.ends == (1, 2, 3, 3)
  assert tr.objective.project == (0, 0, 0, 0)  # same scale, same width
  state = jax.device_get(tr.init_state(0))
  # noise on every parameter: the zero-initialised BN scales would make
  # each fresh candidate its shortcut
  leaves, tree = jax.tree.flatten(state['params']['backbone'])
  keys = jax.random.split(jax.random.key(3), len(leaves))
  state['params']['backbone'] = jax.tree.unflatten(tree, [
      p + 0.05 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])
  prefix = np.array([4, 3, 1, 0], np.int32)  # ends at 1/8, 1/16, 1/32, 1/32
  val = np.random.default_rng(0).integers(0, 255, (16, 16, 16, 3), np.uint8)
  ev = Evaluator(c, tr.space, tr.model, tr.objective, tr.mesh)
  table, got = ev.score_block(state, 2, prefix, val, val)
  assert sorted(map(int, table[:, 0])) == [0, 1]  # att / conv @1/32

  teacher, net = tr.model.teacher, tr.model.backbone
  tv = {k: state[k]['teacher'] for k in ('params', 'batch_stats')}
  sv = {k: state[k]['backbone'] for k in ('params', 'batch_stats')}
  x = augment.eval_view(jnp.asarray(val), c.augment.mean, c.augment.std)
  tarch = jnp.asarray(tr.model.teacher_arch)
  h = teacher.apply(tv, x, tarch, block=1, mode='eval', output='features')
  assert h.shape == (16, 4, 4, 64)  # 1/16 at 16x16, 16 x base width 4
  slots = {2: h, 3: jnp.zeros((16, 2, 2, 128))}
  target = np.asarray(teacher.apply(tv, slots, tarch, block=2, mode='eval',
                                    output='features', start=True))
  for path, loss in zip(table, got):
    arch = prefix.copy()
    arch[2] = path[0]
    f = net.apply(sv, slots, jnp.asarray(arch), block=2, mode='eval',
                  output='features', start=True)
    np.testing.assert_allclose(
        loss, ((np.asarray(f[3]) - target) ** 2).mean(), rtol=1e-4)
  assert np.ptp(got) > 0
