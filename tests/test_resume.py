"""A run killed anywhere and started again ends where an uninterrupted run
ends; a corrupt latest checkpoint falls back to the previous one."""

import json
import logging
import os
import shutil

import jax
import numpy as np
import pytest

from bossnax.checkpoint import Checkpointer
from bossnax.run import Run, write_results
from bossnax.train import Trainer
from test_train import tiny_config


class Killed(Exception):
  pass


def _config(tmp_path):
  c = tiny_config(tmp_path)  # 48 train images: 3 steps per block
  c.space.block_split = '0,1,2|3,4'  # two blocks keep it short
  c.train.checkpoint_every_steps = 2
  return c


def _run(config, workdir, kill_after=None, monkeypatch=None):
  if kill_after is not None:
    original = Trainer.step_fn
    calls = {'n': 0}

    def step_fn(self, block):
      fn = original(self, block)

      def counted(*args):
        if calls['n'] == kill_after:
          raise Killed()
        calls['n'] += 1
        return fn(*args)
      return counted
    monkeypatch.setattr(Trainer, 'step_fn', step_fn)
  run = Run(config, str(workdir))
  try:
    state, meta = run.train_and_search()
  finally:
    run.close()
    monkeypatch.undo() if monkeypatch else None
  return jax.device_get(state), meta


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """(config, final state, meta) of an uninterrupted run."""
  tmp = tmp_path_factory.mktemp('reference')
  c = _config(tmp)
  return (c, *_run(c, tmp / 'ref'))


def test_killed_and_resumed_run_equals_uninterrupted(reference, tmp_path,
                                                     monkeypatch):
  c, ref_state, ref_meta = reference
  # Killed at step 2 of block 2 (5th step overall): the last checkpoint is
  # block 2's start, so steps are redone.
  with pytest.raises(Killed):
    _run(c, tmp_path / 'cut', kill_after=4, monkeypatch=monkeypatch)
  state, meta = _run(c, tmp_path / 'cut')
  assert meta['tables'] == ref_meta['tables']
  assert meta['pool'] == ref_meta['pool']
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(ref_state)):
    np.testing.assert_array_equal(a, b)
  # and the results of the run are written, higher score = better
  ranking = write_results(c, _space(c), meta,
                          str(tmp_path / 'cut'))
  rows = open(tmp_path / 'cut' / 'scores.csv').read().splitlines()
  assert rows[0] == 'arch,score,flops,params' and len(rows) == 33
  assert ranking['top'][0]['arch'] == rows[1].split(',')[0]
  metrics = [json.loads(l) for l in open(tmp_path / 'cut' / 'metrics.jsonl')]
  assert {'loss', 'lr', 'tau', 'images_per_s'} <= set(metrics[0])


def test_scoring_failure_keeps_the_trained_block(reference, tmp_path,
                                                 monkeypatch):
  """Scoring block 0 runs out of memory: the error is one line naming the
  search knobs, block 0's training is checkpointed, and the run started
  again scores it without training it again, ending as the uninterrupted
  run."""
  from bossnax import search
  c, ref_state, ref_meta = reference
  original = search.Scorer.score_block

  def oom(*args, **kwargs):
    raise RuntimeError('RESOURCE_EXHAUSTED: Out of memory allocating 27 GB')
  monkeypatch.setattr(search.Scorer, 'score_block', oom)
  with pytest.raises(MemoryError, match='search.batch_size=16'):
    _run(c, tmp_path / 'cut')
  run = Run(c, str(tmp_path / 'cut'), write_metrics=False)
  _, _, meta = run.ckpt.restore_latest(run.trainer.state_shapes())
  run.close()
  assert (meta['block'], meta['block_step'], meta['tables']) == (0, 3, {})

  monkeypatch.setattr(search.Scorer, 'score_block', original)
  steps = []
  step_fn = Trainer.step_fn
  monkeypatch.setattr(Trainer, 'step_fn', lambda self, block: (
      steps.append(block) or step_fn(self, block)))
  state, meta = _run(c, tmp_path / 'cut')
  assert steps == [0, 1]  # block 0's loop had nothing left to run
  assert meta['tables'] == ref_meta['tables']
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(ref_state)):
    np.testing.assert_array_equal(a, b)


def _space(c):
  from bossnax.spaces import make_space
  return make_space(c.space)


def test_corrupt_latest_checkpoint_falls_back(tmp_path, caplog):
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ('data',))
  rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  shard = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  tree = lambda v: {'w': jax.device_put(np.full((8, 3), v, np.float32), shard),
                    'b': jax.device_put(np.float32(v), rep)}
  ckpt = Checkpointer(tmp_path / 'ck', max_to_keep=3)
  for step in (1, 2, 3):
    ckpt.save(step, tree(step), {'step': step})
  ckpt.wait()
  template = jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding),
      tree(0))
  step, state, meta = ckpt.restore_latest(template)
  assert step == 3 and meta == {'step': 3}
  assert state['w'].sharding == shard
  # Break step 3: remove its array data.
  for root, dirs, files in os.walk(tmp_path / 'ck' / '3' / 'state'):
    for f in files:
      if f != '_METADATA':
        os.remove(os.path.join(root, f))
  with caplog.at_level(logging.WARNING):
    step, state, meta = Checkpointer(tmp_path / 'ck').restore_latest(template)
  assert step == 2 and float(state['b']) == 2.0
  assert 'step 3' in caplog.text
  # Nothing readable: one clear error.
  shutil.rmtree(tmp_path / 'ck' / '2' / 'state')
  shutil.rmtree(tmp_path / 'ck' / '1' / 'state')
  with pytest.raises(RuntimeError, match='delete that folder'):
    Checkpointer(tmp_path / 'ck').restore_latest(template)
