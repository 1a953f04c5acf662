"""Block-wise supervised classification (method=supervised) and labels in
the data path: the cross-entropy against a hand computation, one classifier
per block trained with its block only, labels really read by the supervised
step and score and never by the self-supervised ones, vectorised scoring
equal to the per-path loop, accuracy reported. One-shot supervised training
(method=supervised_oneshot): whole paths, every block trained, whole
networks scored by hand, a whole run ranked and rescored."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bossnax import parallel
from bossnax.data import augment
from bossnax.engine.evaluator import Evaluator
from bossnax.objectives.supervised import BlockSupervised, cross_entropy
from conftest import batch, sample_archs, tiny_config, trainer

PREFIX = np.zeros(5, np.int32)


def test_cross_entropy_by_hand():
  logits = jnp.array([[1.0, 2.0, 0.0]])
  p = np.exp([1.0, 2.0, 0.0]) / np.exp([1.0, 2.0, 0.0]).sum()
  np.testing.assert_allclose(cross_entropy(logits, jnp.array([1]), 3),
                             [-np.log(p[1])], rtol=1e-6)
  # smoothing 0.3 over 3 classes: target (0.1, 0.8, 0.1)
  want = -(0.1 * np.log(p[0]) + 0.8 * np.log(p[1]) + 0.1 * np.log(p[2]))
  np.testing.assert_allclose(cross_entropy(logits, jnp.array([1]), 3, 0.3),
                             [want], rtol=1e-6)
  with pytest.raises(ValueError, match=r'label_smoothing=1.0: use a value'):
    BlockSupervised(label_smoothing=1.0)


def test_loss_and_score_on_made_up_logits():
  """The objective's loss is the mean over paths of the per-path mean
  cross-entropy of the first view; the score sums weighted cross-entropies
  of each path."""
  obj = BlockSupervised(num_classes=3)
  logits = jnp.array([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
                      [[0.0, 0.0, 3.0], [1.0, 1.0, 1.0]]])  # [P=2, B=2, 3]
  labels = jnp.array([0, 1])
  ce = np.asarray(cross_entropy(logits, labels[None], 3))  # [2, 2]
  forward = lambda p, s, a, views: ((logits,), 'stats')
  total, (mean, stats) = obj.loss(forward, None, None, None, None, None,
                                  ('v1', 'v2'), labels=labels)
  np.testing.assert_allclose(total, ce.mean(1).sum(), rtol=1e-6)
  np.testing.assert_allclose(mean, ce.mean(), rtol=1e-6)
  assert stats == 'stats'

  def run(side, fn):
    assert side == 0  # one side: no target network
    outs = [fn(lambda x, p=p: logits[p], ('x', 'x'), p) for p in range(2)]
    return jax.tree.map(lambda *v: jnp.stack(v), *outs)
  w = jnp.array([1.0, 0.0])  # the second image is padding
  got = obj.score(run, w, labels)
  np.testing.assert_allclose(got['loss'], ce[:, 0], rtol=1e-6)
  # image 0 (label 0): path 0 predicts class 0, path 1 class 2
  np.testing.assert_array_equal(got['correct'], [1.0, 0.0])
  with pytest.raises(ValueError, match='needs labels'):
    obj.loss(forward, None, None, None, None, None, ('v',))


@pytest.fixture(scope='module')
def sup():
  c = tiny_config()
  c.method = 'supervised'
  c.train.warmup_epochs = 0.0  # the first step already moves the weights
  return c, trainer(c)


def _labels(tr, seed):
  y = np.random.default_rng(seed).integers(0, 10, (1, 16)).astype(np.int32)
  return parallel.global_batch(tr.mesh, y, batch_axis=1)


def test_a_classifier_per_block_trained_with_its_block(sup):
  c, tr = sup
  init = tr.init_state(0)
  heads = init['params']['heads']
  for k in range(3):
    kernel = heads[f'block{k}'][f'classifier{k}']['kernel']
    assert kernel.shape == (c.model.embed_dim, 10)
  before = jax.device_get(init['params'])
  archs = sample_archs(tr, 0, 0, PREFIX)
  state = tr.start_block(init, 0)
  new, m = tr.step_fn(0)(state, batch(tr), jax.random.key(0), archs,
                         _labels(tr, 0))
  after = jax.device_get(new['params'])
  assert np.isfinite(float(m['loss']))
  moved = lambda t: any(bool(np.any(a != b)) for a, b in zip(
      jax.tree.leaves(before[t[0]][t[1]]), jax.tree.leaves(after[t[0]][t[1]])))
  assert moved(('heads', 'block0')) and moved(('backbone', 'block0'))
  for k in (1, 2):
    assert not moved(('heads', f'block{k}'))
    assert not moved(('backbone', f'block{k}'))
  # The labels are read: other labels, another loss on the same batch.
  state = tr.start_block(tr.init_state(0), 0)
  _, m2 = tr.step_fn(0)(state, batch(tr), jax.random.key(0), archs,
                        _labels(tr, 1))
  assert abs(float(m2['loss']) - float(m['loss'])) > 1e-4


def test_self_supervised_step_never_reads_labels():
  """BossNAS's step with labels, shuffled labels and none: bitwise the same
  state (the run does not even hand them over, run.py)."""
  c = tiny_config()
  tr = trainer(c)
  assert not tr.objective.uses_labels
  archs = sample_archs(tr, 0, 0, PREFIX)
  outs = []
  for labels in (None, _labels(tr, 0), _labels(tr, 1)):
    state = tr.start_block(tr.init_state(0), 0)
    outs.append(jax.device_get(tr.step_fn(0)(state, batch(tr),
                                             jax.random.key(0), archs,
                                             labels)[0]))
  for other in outs[1:]:
    for a, b in zip(jax.tree.leaves(outs[0]), jax.tree.leaves(other),
                    strict=True):
      np.testing.assert_array_equal(a, b)


def test_supervised_scores_vectorised_equal_loop(sup):
  """Validation cross-entropy of every path of block 0 in one vectorised
  pass equals the per-path loop; the scores read the labels and the clean
  images (no augmentation: more view pairs change nothing)."""
  c, tr = sup
  archs = sample_archs(tr, 0, 0, PREFIX)
  state, _ = tr.step_fn(0)(tr.start_block(tr.init_state(0), 0), batch(tr),
                           jax.random.key(0), archs, _labels(tr, 0))
  rng = np.random.default_rng(0)
  val = rng.integers(0, 255, (24, 32, 32, 3), np.uint8)  # a padded batch
  y = rng.integers(0, 10, 24).astype(np.int32)
  calib = rng.integers(0, 255, (16, 32, 32, 3), np.uint8)
  ev = Evaluator(c, tr.space, tr.model, tr.objective, tr.mesh)
  table, vec = ev.score_block(state, 0, PREFIX, val, calib, val_labels=y)
  _, loop = ev.score_block_loop(state, 0, PREFIX, val, calib, val_labels=y)
  assert len(table) == 4
  np.testing.assert_allclose(vec, loop, rtol=1e-5, atol=1e-6)
  assert np.all((vec > 0) & (vec < 10))  # mean cross-entropies
  acc = ev.last_metrics['correct']  # reported beside the loss
  assert acc.shape == (4,) and np.all((acc >= 0) & (acc <= 1))
  np.testing.assert_allclose(acc * 24, np.round(acc * 24), atol=1e-4)
  _, shuffled = ev.score_block(state, 0, PREFIX, val, calib,
                               val_labels=np.roll(y, 1))
  assert np.abs(shuffled - vec).max() > 1e-4
  c2 = c.copy_and_resolve_references()
  c2.search.view_pairs = 3  # ignored: clean images are scored once
  other = Evaluator(c2, tr.space, tr.model, tr.objective, tr.mesh)
  np.testing.assert_allclose(
      other.score_block(state, 0, PREFIX, val, calib, val_labels=y)[1], vec,
      rtol=1e-6)


# -- one-shot supervised (method=supervised_oneshot, SPOS) ---------------------

@pytest.fixture(scope='module')
def oneshot():
  c = tiny_config()
  c.method = 'supervised_oneshot'
  c.train.warmup_epochs = 0.0
  c.search.recalibrate_bn = False  # the hand computation reads the state
  return c, trainer(c)


def test_oneshot_samples_whole_paths_and_trains_every_block(oneshot):
  c, tr = oneshot
  from bossnax.methods import build_method
  sampler = build_method(c, tr.space).stages[0].sampler
  a0, a1 = sampler.sample(0, 0), sampler.sample(0, 1)
  np.testing.assert_array_equal(a0, sampler.sample(0, 0))  # pure in step
  assert a0.shape == (2, 5) and not np.array_equal(a0, a1)
  assert all(tr.space.is_valid(tr.space.unflatten(a)) for a in a0)
  init = tr.init_state(0)
  before = jax.device_get(init['params'])
  new, m = tr.step_fn(0)(tr.start_block(init, 0), batch(tr),
                         jax.random.key(0), a0, _labels(tr, 0))
  after = jax.device_get(new['params'])
  assert np.isfinite(float(m['loss']))
  for k in range(3):  # one stage trains the whole network
    assert any(bool(np.any(a != b)) for a, b in zip(
        jax.tree.leaves(before['backbone'][f'block{k}']),
        jax.tree.leaves(after['backbone'][f'block{k}']))), k


def test_oneshot_scores_whole_networks_by_hand(oneshot):
  """The vectorised score of whole architectures is each network's
  validation cross-entropy computed from its logits by hand."""
  c, tr = oneshot
  state = tr.init_state(0)
  rng = np.random.default_rng(0)
  val = rng.integers(0, 255, (16, 32, 32, 3), np.uint8)
  y = rng.integers(0, 10, 16).astype(np.int32)
  archs = np.array([[0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 1, 0, 1]],
                   np.int32)
  ev = Evaluator(c, tr.space, tr.model, tr.objective, tr.mesh)
  got = ev.score_archs(state, 0, archs, val, val, val_labels=y)
  s = jax.device_get(state)
  x = augment.eval_view(jnp.asarray(val), c.augment.mean, c.augment.std)
  for arch, loss in zip(archs, got):
    logits = np.asarray(tr.model.backbone.apply(
        {k: s[k]['backbone'] for k in ('params', 'batch_stats')}, x,
        jnp.asarray(arch), mode='eval', output='logits'), np.float64)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    np.testing.assert_allclose(loss, -logp[np.arange(16), y].mean(),
                               rtol=1e-5)
  want_acc = [float((np.asarray(tr.model.backbone.apply(
      {k: s[k]['backbone'] for k in ('params', 'batch_stats')}, x,
      jnp.asarray(a), mode='eval', output='logits')).argmax(-1) == y).mean())
      for a in archs]
  np.testing.assert_allclose(ev.last_metrics['correct'], want_acc, atol=1e-6)


@pytest.mark.slow
def test_oneshot_run_ranks_every_architecture(tmp_path):
  """A whole tiny run: one stage, then every one of the 32 architectures
  scored and ranked (scores.csv)."""
  from bossnax.run import write_results
  from conftest import run_search
  c = tiny_config()
  c.method = 'supervised_oneshot'
  _, meta = run_search(c, tmp_path / 'run')
  assert meta['block'] == 1 and len(meta['archs']) == 32
  summary = write_results(c, trainer(c).space, meta, str(tmp_path))
  rows = (tmp_path / 'scores.csv').read_text().splitlines()
  assert len(rows) == 33 and summary['best'] == meta['archs'][int(
      np.argmin(meta['losses']))]
  # bossnax.rescore scores the same whole networks again: the same losses
  from bossnax.rescore import rescore
  _, again, diff = rescore(c, str(tmp_path / 'run'), str(tmp_path / 'again'))
  assert diff < 1e-5 and again['archs'] == meta['archs']
  # search_arch --workdir: the supernet is the fitness (batches padded to
  # search.path_chunk), each architecture scored as the run scored it
  import json
  from bossnax import search_arch
  (tmp_path / 'run' / 'config.json').write_text(c.to_json_best_effort())
  assert search_arch.main([f'--workdir={tmp_path / "run"}',
                           '--strategy=random', '--evaluations=5',
                           f'--out={tmp_path / "sa"}']) == 0
  found = json.loads((tmp_path / 'sa' / 'search.json').read_text())
  losses = dict(zip(meta['archs'], meta['losses']))
  assert found['evaluations'] == 5
  for r in found['evaluated']:
    assert r['score'] == pytest.approx(-losses[r['arch']], rel=1e-4)
