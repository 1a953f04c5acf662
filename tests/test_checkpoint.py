"""Checkpointer: sharded round trip, rotation, and falling back past
checkpoints that are damaged or saved by another config."""

import glob
import logging
import os
import shutil

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from bossnax.checkpoint import Checkpointer

# Orbax leaves failed read coroutines behind when a restore fails: noise.
pytestmark = pytest.mark.filterwarnings(
    'ignore::pytest.PytestUnraisableExceptionWarning')


@pytest.fixture(scope='module')
def shardings():
  mesh = Mesh(np.array(jax.devices()), ('data',))
  return NamedSharding(mesh, P('data')), NamedSharding(mesh, P())


def _state(v, shardings, rows=8):
  shard, rep = shardings
  return {'w': jax.device_put(np.full((rows, 3), v, np.float32), shard),
          'opt': (jax.device_put(np.arange(4, dtype=np.int32) + v, rep),),
          'b': jax.device_put(np.float32(v), rep)}


def _template(state):
  return jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding),
      state)


def _saved(tmp_path, shardings, steps=(1, 2, 3), **kw):
  ckpt = Checkpointer(tmp_path / 'ck', **kw)
  for step in steps:
    assert ckpt.save(step, _state(step, shardings), {'step': step})
  ckpt.close()
  return Checkpointer(tmp_path / 'ck')


def _break(tmp_path, step):
  """Truncate every array data file of `step` (as a crash or full disk
  might)."""
  files = glob.glob(str(tmp_path / 'ck' / str(step) / 'state' / 'd' / '*'))
  assert files
  for f in files:
    os.truncate(f, 0)


def test_round_trip_keeps_values_and_shardings(tmp_path, shardings):
  assert Checkpointer(tmp_path / 'ck').restore_latest(None) is None
  saved = _state(7, shardings)
  ckpt = Checkpointer(tmp_path / 'ck')
  meta = {'block': 1, 'pool': [[[0, 1], 0.5]]}
  ckpt.save(10, saved, meta)
  meta['block'] = 2  # mutated after save: the checkpoint keeps the old value
  ckpt.wait()
  assert ckpt.restore_meta_latest() == (10, {'block': 1, 'pool': [[[0, 1],
                                                                   0.5]]})
  step, state, meta = ckpt.restore_latest(_template(saved))
  assert step == 10 and meta['block'] == 1
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(saved)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert a.sharding == b.sharding and a.dtype == b.dtype
  # A template may depend on the meta.
  step, _, _ = ckpt.restore_latest(lambda m: _template(_state(0, shardings)))
  assert step == 10
  ckpt.close()


def test_keeps_max_to_keep_and_interval(tmp_path, shardings):
  ckpt = _saved(tmp_path, shardings, steps=(1, 2, 3, 4, 5), max_to_keep=2)
  assert ckpt.all_steps() == [4, 5]
  ckpt = Checkpointer(tmp_path / 'iv', save_interval_steps=10)
  assert ckpt.save(10, _state(1, shardings), {})
  assert not ckpt.save(15, _state(1, shardings), {})
  assert ckpt.save(16, _state(1, shardings), {}, force=True)
  ckpt.close()
  assert ckpt.all_steps() == [10, 16]


def test_corrupt_latest_falls_back_then_is_replaced(tmp_path, shardings,
                                                     caplog):
  ckpt = _saved(tmp_path, shardings)
  _break(tmp_path, 3)
  with caplog.at_level(logging.WARNING, logger='bossnax'):
    step, state, meta = ckpt.restore_latest(_template(_state(0, shardings)))
  assert step == 2 and meta == {'step': 2} and float(state['b']) == 2.0
  np.testing.assert_array_equal(np.asarray(state['w']), 2.0)
  assert 'checkpoint at step 3 is unreadable' in caplog.text
  # The resumed run saves step 3 again: the damaged one must not block it.
  assert ckpt.save(3, _state(33, shardings), {'step': 33})
  ckpt.wait()
  step, state, _ = ckpt.restore_latest(_template(_state(0, shardings)))
  assert step == 3 and float(state['b']) == 33.0
  ckpt.close()


def test_missing_item_and_bad_meta_fall_back(tmp_path, shardings, caplog):
  ckpt = _saved(tmp_path, shardings)
  shutil.rmtree(tmp_path / 'ck' / '3' / 'state')
  with open(tmp_path / 'ck' / '2' / 'meta' / 'metadata', 'w') as f:
    f.write('{not json')
  with caplog.at_level(logging.WARNING, logger='bossnax'):
    assert ckpt.restore_meta_latest() == (3, {'step': 3})
    step, _, meta = ckpt.restore_latest(_template(_state(0, shardings)))
  assert step == 1 and meta == {'step': 1}
  assert 'step 3' in caplog.text and 'step 2' in caplog.text


@pytest.mark.parametrize('change', ['shape', 'structure'])
def test_template_mismatch_falls_back(tmp_path, shardings, caplog, change):
  ckpt = Checkpointer(tmp_path / 'ck')
  ckpt.save(1, _state(1, shardings), {})
  bigger = _state(2, shardings, rows=16)  # step 2 from another config
  if change == 'structure':
    bigger = dict(_state(2, shardings), extra=bigger['b'])
  ckpt.save(2, bigger, {})
  ckpt.close()
  with caplog.at_level(logging.WARNING, logger='bossnax'):
    step, state, _ = ckpt.restore_latest(_template(_state(0, shardings)))
  assert step == 1 and float(state['b']) == 1.0
  message = 'checkpoint at step 2 does not match the current config: '
  message += ('w saved (16, 3) now (8, 3)' if change == 'shape'
              else 'extra not in the current state')
  assert message in caplog.text


def test_all_unreadable_is_one_line_error(tmp_path, shardings):
  ckpt = _saved(tmp_path, shardings, steps=(1, 2))
  _break(tmp_path, 1)
  _break(tmp_path, 2)
  with pytest.raises(RuntimeError) as e:
    ckpt.restore_latest(_template(_state(0, shardings)))
  text = str(e.value)
  assert '\n' not in text and str(tmp_path / 'ck') in text
  assert 'delete that folder or use another --workdir' in text
  for name in ('1', '2'):
    shutil.rmtree(tmp_path / 'ck' / name / 'meta')
  with pytest.raises(RuntimeError, match='delete that folder'):
    ckpt.restore_meta_latest()
