"""A run killed anywhere and started again ends where an uninterrupted run
ends (the session's tiny run); a scoring failure keeps the trained block; a
corrupt latest checkpoint falls back to the previous one; a checkpoint of
an older format is refused in one line."""

import json
import logging
import os
import shutil

import jax
import numpy as np
import pytest

from bossnax.checkpoint import Checkpointer
from bossnax.engine.evaluator import Evaluator
from bossnax.engine.supernet import Trainer
from bossnax.run import FORMAT, Run
from conftest import cut_search, run_search


def _equal_states(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)


@pytest.mark.slow
@pytest.mark.xdist_group('tiny_run')
def test_killed_and_resumed_run_equals_uninterrupted(tiny_run, tmp_path,
                                                     monkeypatch):
  c, ref_dir, ref_state, ref_meta = tiny_run
  # Killed at step 2 of block 2 (5th step overall): the last checkpoint is
  # block 2's start, so steps are redone.
  cut_search(monkeypatch, c, tmp_path / 'cut', 4)
  state, meta = run_search(c, tmp_path / 'cut')
  assert meta['tables'] == ref_meta['tables']
  assert meta['pool'] == ref_meta['pool']
  _equal_states(state, ref_state)
  metrics = [json.loads(l) for l in open(tmp_path / 'cut' / 'metrics.jsonl')]
  assert {'loss', 'lr', 'tau', 'images_per_s'} <= set(metrics[0])
  assert meta['format'] == FORMAT and meta['method'] == 'bossnas'


@pytest.mark.slow
@pytest.mark.xdist_group('tiny_run')
def test_scoring_failure_keeps_the_trained_block(tiny_run, tmp_path,
                                                 monkeypatch):
  """Scoring block 0 runs out of memory: the error is one line naming the
  search knobs, block 0's training is checkpointed, and the run started
  again scores it without training it again, ending as the uninterrupted
  run."""
  c, _, ref_state, ref_meta = tiny_run

  def oom(*args, **kwargs):
    raise RuntimeError('RESOURCE_EXHAUSTED: Out of memory allocating 27 GB')
  monkeypatch.setattr(Evaluator, 'score_block', oom)
  with pytest.raises(MemoryError, match='search.batch_size=16'):
    run_search(c, tmp_path / 'cut')
  monkeypatch.undo()
  run = Run(c, str(tmp_path / 'cut'), write_metrics=False)
  _, _, meta = run.restore()
  run.close()
  assert (meta['block'], meta['block_step'], meta['tables']) == (0, 3, {})

  steps = []
  step_fn = Trainer.step_fn
  monkeypatch.setattr(Trainer, 'step_fn', lambda self, block: (
      steps.append(block) or step_fn(self, block)))
  state, meta = run_search(c, tmp_path / 'cut')
  assert steps == [0, 1, 2]  # block 0's loop had nothing left to run
  assert meta['tables'] == ref_meta['tables']
  _equal_states(state, ref_state)


@pytest.mark.slow
@pytest.mark.xdist_group('tiny_run')
def test_older_checkpoint_format_is_refused_in_one_line(tiny_run, tmp_path):
  """A checkpoint written before formats were recorded (meta without
  'format', the state of bossnax before the engine) stops the run with one
  line, and nothing is deleted."""
  c, ref_dir, _, _ = tiny_run
  work = tmp_path / 'old'
  shutil.copytree(ref_dir / 'checkpoints', work / 'checkpoints')
  last = max(int(p) for p in os.listdir(work / 'checkpoints') if p.isdigit())
  meta_file = work / 'checkpoints' / str(last) / 'meta' / 'metadata'
  meta = json.loads(meta_file.read_text())
  del meta['format']
  meta_file.write_text(json.dumps(meta))
  with pytest.raises(ValueError, match='older bossnax format') as e:
    run_search(c, work)
  assert len(str(e.value).splitlines()) == 1
  assert meta_file.exists()
  from bossnax import main
  rc = main.main([f'--config={_config_file()}:tiny', f'--workdir={work}',
                  '--config.num_devices=2'])
  assert rc == 2


def _config_file():
  from conftest import ROOT
  return ROOT / 'configs' / 'nats_cifar10.py'


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
