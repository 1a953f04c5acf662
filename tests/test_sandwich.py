"""DATA (method=data): the sandwich's order, MoCo's queue and loss by hand,
the key encoder pinned to the largest network, a sharded step equal to one
device's, the selection distances by hand, vectorised scoring equal to the
per-path loop, and a tiny run of configs/data_cifar.py that trains,
selects and exports (the export equals the supernet's path; a linear probe
of it trains the classifier only); killed and resumed equals
uninterrupted, queue included."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bossnax import parallel
from bossnax.objectives import similarity
from bossnax.objectives.sandwich import enqueue, info_nce
from conftest import DEVICES, ROOT, tiny_config, trainer


def data_nats_config():
  """NATS tiny with method=data (widths 4 / 8: 32 architectures)."""
  c = tiny_config()
  c.method = 'data'
  c.data.image_size = 16
  c.train.paths_per_step = 3
  c.moco.queue_size = 64
  c.moco.feat_dim = 8
  c.moco.neck_hidden = 16
  c.search.evaluator = 'similarity_to_largest'
  return c


def unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_the_sandwich_is_largest_smallest_then_random():
  from bossnax.samplers import SandwichSampler
  from bossnax.spaces import make_space
  space = make_space(tiny_config().space)
  sampler = SandwichSampler(space, 4, seed=3)
  a, b = sampler.sample(0, 5), sampler.sample(0, 6)
  for archs in (a, b):
    assert space.to_string(space.unflatten(archs[0])) == '8:8:8:8:8'
    assert space.to_string(space.unflatten(archs[1])) == '4:4:4:4:4'
  np.testing.assert_array_equal(a, sampler.sample(0, 5))  # (seed, step)
  assert not np.array_equal(a[2:], b[2:])
  with pytest.raises(ValueError, match='use 2 or more'):
    SandwichSampler(space, 1, 0)


def test_the_queue_is_a_ring_and_the_loss_is_infonce_by_hand():
  queue = jnp.zeros((6, 2))
  keys = jnp.arange(8.0).reshape(4, 2)
  q1, p = enqueue(queue, jnp.int32(0), keys[:2])
  q2, p = enqueue(q1, p, keys[2:])
  q3, p = enqueue(q2, p, keys[:2] + 100)
  q4, p = enqueue(q3, p, keys[2:] + 200)  # full: the oldest are replaced
  np.testing.assert_array_equal(q4, [[204, 205], [206, 207], [4, 5], [6, 7],
                                     [100, 101], [102, 103]])
  assert int(p) == 2
  with pytest.raises(ValueError, match='multiple of the micro-batch'):
    enqueue(jnp.zeros((5, 2)), jnp.int32(0), keys[:2])
  rng = np.random.default_rng(0)
  q, k, neg = rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), unit(
      rng.normal(size=(5, 4)))
  logits = np.concatenate([(unit(q) * unit(k)).sum(-1, keepdims=True),
                           unit(q) @ neg.T], -1) / 0.2
  by_hand = -logits[:, 0] + np.log(np.exp(logits).sum(-1))
  np.testing.assert_allclose(info_nce(q, k, neg, 0.2), by_hand, rtol=1e-5)


def test_global_and_dense_distances_by_hand():
  rng = np.random.default_rng(1)
  q, k = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
  queue = unit(rng.normal(size=(6, 4)))
  cos = (unit(q) * unit(k)).sum(-1)
  d = lambda kind, **kw: np.asarray(similarity.global_distance(kind, q, k,
                                                               **kw))
  np.testing.assert_allclose(d('cosine'), 1 - cos, rtol=1e-5)
  np.testing.assert_allclose(d('mse'), ((unit(q) - unit(k)) ** 2).sum(-1),
                             rtol=1e-5)
  soft = lambda z: np.exp(z) / np.exp(z).sum(-1, keepdims=True)
  p_k, p_q = soft(unit(k) @ queue.T / 0.5), soft(unit(q) @ queue.T / 0.5)
  np.testing.assert_allclose(d('relation', queue=queue, temperature=0.5),
                             -(p_k * np.log(p_q)).sum(-1), rtol=1e-5)
  with pytest.raises(ValueError, match='needs a queue'):
    similarity.global_distance('relation', q, k)
  # Gram matrices of maps with different widths (3 and 5 channels)
  fq, fk = rng.normal(size=(2, 2, 3, 3)), rng.normal(size=(2, 2, 3, 5))
  g = lambda f: np.einsum('bic,bjc->bij', unit(f.reshape(2, 6, -1)),
                          unit(f.reshape(2, 6, -1)))
  gq, gk = g(fq), g(fk)
  dd = lambda kind: np.asarray(similarity.dense_distance(kind, fq, fk, 0.2))
  np.testing.assert_allclose(dd('gram_mse'), ((gq - gk) ** 2).mean((1, 2)),
                             rtol=1e-5)
  flat = lambda m: unit(m.reshape(2, -1))
  np.testing.assert_allclose(dd('gram_cosine'),
                             1 - (flat(gq) * flat(gk)).sum(-1), rtol=1e-5)
  sq, sk = soft(gq / 0.2), soft(gk / 0.2)
  np.testing.assert_allclose(
      dd('gram_kl'), (sk * (np.log(sk) - np.log(sq))).sum(-1).mean(-1),
      rtol=1e-4)


def test_moco_views_read_their_jitter_and_crop_settings():
  import ml_collections
  from bossnax.data import augment
  cfg = ml_collections.ConfigDict({
      'ops': 'color', 'pad': 4, 'mean': (0.0,) * 3, 'std': (1.0,) * 3,
      'jitter': (0.0, 0.0, 0.0, 0.0), 'rrc_scale': (0.2, 1.0)})
  x = np.random.default_rng(0).integers(0, 255, (4, 8, 8, 3), np.uint8)
  v1, v2 = augment.make_view_fn(cfg)(jax.random.key(0), x)
  np.testing.assert_allclose(v1, x / 255.0, atol=1e-5)  # no jitter at 0
  cfg.jitter = (0.4, 0.4, 0.4, 0.1)
  v1, _ = augment.make_view_fn(cfg)(jax.random.key(0), x)
  assert np.abs(np.asarray(v1) - x / 255.0).max() > 0.01
  cfg.rrc_scale = (0.0, 1.0)
  with pytest.raises(ValueError, match='augment.rrc_scale'):
    augment.make_view_fn(cfg)


def _images(n=16, seed=0):
  return np.random.default_rng(seed).integers(0, 255, (1, n, 16, 16, 3),
                                              np.uint8)


def test_the_key_encoder_runs_the_largest_architecture_on_the_key_view():
  """targets() runs the key encoder (the extra state's weights) once, at
  the largest architecture whatever paths the step samples, on the second
  view only (MoCo); its normalised output is what is enqueued."""
  from bossnax.objectives.sandwich import SandwichContrastive
  obj = SandwichContrastive(largest=(7, 7, 7), queue_size=8, dim=4)
  calls = []
  z = unit(np.random.default_rng(3).normal(size=(1, 4, 4))).astype(
      np.float32)

  def forward(params, stats, archs, views):
    calls.append((params, np.asarray(archs), len(views), views[0]))
    return tuple({'z': jnp.asarray(z) * (i + 1)} for i in range(len(views))), stats
  extra = {'params': 'key weights', 'batch_stats': {}, 'queue':
           jnp.zeros((8, 4)), 'ptr': jnp.int32(0)}
  views = ('view 1', 'view 2')
  (keys, queue), new = obj.targets(forward, extra, np.zeros((3, 3)), views)
  [(params, archs, n, seen)] = calls
  assert params == 'key weights' and n == 1 and seen == 'view 2'
  np.testing.assert_array_equal(archs, [[7, 7, 7]])
  assert keys[0] is None
  np.testing.assert_allclose(new['queue'][:4], z[0], rtol=1e-6)
  np.testing.assert_array_equal(queue, extra['queue'])  # negatives: before


def test_data_refuses_width_groups_and_views_per_path():
  from bossnax.methods import build_method
  from bossnax.spaces import make_space
  c = data_nats_config()
  space = make_space(c.space)
  for key, value in (('width_groups', 2), ('views_per_path', True)):
    c2 = c.copy_and_resolve_references()
    c2.train[key] = value
    with pytest.raises(ValueError, match='set train.width_groups=1 and '
                       'train.views_per_path=False'):
      build_method(c2, space)


def test_the_key_encoder_is_the_largest_network_and_sharding_changes_nothing():
  """Two steps from one state with different sampled paths enqueue the
  same keys (the key encoder's view of the largest network), while the
  online weights differ; the key encoder is their EMA at momentum m; the
  first step on 2 devices equals the same step on 1."""
  c = data_nats_config()
  c.moco.momentum = 0.9
  out = {}
  for devices in (2, 1):
    tr = trainer(c, devices=devices, image_shape=(16, 16, 3))
    space = tr.space
    base = tr.start_block(tr.init_state(0), 0)
    if devices == 2:
      before = jax.device_get(base)
    x = parallel.global_batch(tr.mesh, _images(), batch_axis=1)
    sandwiches = (('8:8:8:8:8', '4:4:4:4:4', '4:8:4:8:4'),
                  ('8:8:8:8:8', '4:4:4:4:4', '8:4:8:4:8'))
    for texts in sandwiches[:devices]:  # both on 2 devices, one on 1
      archs = np.stack([space.flatten(space.from_string(t)) for t in texts])
      state = jax.tree.map(jnp.copy, base)
      state, m = tr.step_fn(0)(state, x, jax.random.key(0), archs, None)
      assert np.isfinite(m['loss'])
      out[devices, texts[-1]] = jax.device_get(state)
  a, b = out[2, '4:8:4:8:4'], out[2, '8:4:8:4:8']
  np.testing.assert_array_equal(a['extra']['queue'], b['extra']['queue'])
  assert int(a['extra']['ptr']) == 16
  assert not np.allclose(a['extra']['queue'][:16],
                         before['extra']['queue'][:16])
  np.testing.assert_array_equal(a['extra']['queue'][16:],
                                before['extra']['queue'][16:])
  w = lambda s: s['backbone']['block0']['cell0']['e01']['conv']['kernel']
  assert not np.allclose(w(a['params']), w(b['params']))
  np.testing.assert_allclose(
      w(a['extra']['params']),
      0.9 * w(before['extra']['params']) + 0.1 * w(a['params']), rtol=1e-5,
      atol=1e-7)
  one = out[1, '4:8:4:8:4']
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-4,
                                                       atol=1e-6),
               (a['params'], a['extra']), (one['params'], one['extra']))


def test_the_byol_variant_regresses_the_key_projections_by_hand():
  """moco.loss=byol: the model has a predictor, and a path's loss is
  BYOL's symmetric 2 - 2 cos of its predictions against the key
  encoder's projections of the other view, summed over paths."""
  from bossnax.objectives.sandwich import SandwichContrastive
  obj = SandwichContrastive(largest=(1, 1), loss_kind='byol', queue_size=8,
                            dim=4, hidden=8, pred_hidden=8)
  c = data_nats_config()
  c.moco.loss, c.moco.pred_hidden = 'byol', 16
  tr = trainer(c, image_shape=(16, 16, 3))
  shapes = tr.state_shapes()
  names = [jax.tree_util.keystr(p) for p, _ in
           jax.tree_util.tree_flatten_with_path(shapes['params'])[0]]
  assert any("['predictor']" in n for n in names)
  rng = np.random.default_rng(2)
  p1, p2 = rng.normal(size=(2, 3, 5, 4))  # 3 paths, 5 images
  k1, k2 = unit(rng.normal(size=(2, 5, 4)))
  forward = lambda params, stats, archs, views: (
      ({'p': p1}, {'p': p2}), stats)
  total, (mean, _) = obj.loss(forward, None, {}, ((k1, k2), None), None,
                              None, (None, None))
  by_hand = ((2 - 2 * (unit(p1) * k2).sum(-1)) +
             (2 - 2 * (unit(p2) * k1).sum(-1))).mean(1)
  np.testing.assert_allclose(total, by_hand.sum(), rtol=1e-5)
  np.testing.assert_allclose(mean, by_hand.mean(), rtol=1e-5)


def test_scoring_is_vectorised_as_the_loop_and_the_largest_is_closest_at_init():
  """At initialisation the key encoder is the online network, so the
  largest architecture is at distance 0 from itself (without
  recalibration: the same statistics) and every other path is farther;
  the vectorised pass equals the per-path loop, recalibrated or not."""
  from bossnax.engine.evaluator import Evaluator
  c = data_nats_config()
  tr = trainer(c, image_shape=(16, 16, 3))
  state = tr.start_block(tr.init_state(0), 0)
  rng = np.random.default_rng(0)
  val = rng.integers(0, 255, (32, 16, 16, 3), np.uint8)
  calib = rng.integers(0, 255, (16, 16, 16, 3), np.uint8)
  prefix = tr.space.flatten(tr.space.largest())
  for recalibrate in (False, True):
    c.search.recalibrate_bn = recalibrate
    ev = Evaluator(c, tr.space, tr.model, tr.objective, tr.mesh)
    table, vec = ev.score_block(state, 0, prefix, val, calib)
    _, loop = ev.score_block_loop(state, 0, prefix, val, calib)
    np.testing.assert_allclose(vec, loop, rtol=1e-4, atol=1e-6)
    if not recalibrate:
      largest = int(np.flatnonzero((table == 1).all(-1))[0])
      assert abs(vec[largest]) < 1e-6
      assert (np.delete(vec, largest) > 1e-4).all()
  c.method = 'bossnas'
  from bossnax.run import Run
  with pytest.raises(ValueError, match='use it with --config.method=data'):
    Run(c, '/nonexistent/never/written', write_metrics=False)


def data_cifar_tiny():
  from bossnax.config import load_config_file
  c = load_config_file(f'{ROOT}/configs/data_cifar.py:tiny')
  c.num_devices = DEVICES
  return c


@pytest.fixture(scope='module')
def data_run(tmp_path_factory):
  """configs/data_cifar.py:tiny through main: (workdir, final state,
  meta)."""
  from bossnax import main
  from bossnax.run import Run
  workdir = tmp_path_factory.mktemp('data') / 'run'
  assert main.main([f'--config={ROOT}/configs/data_cifar.py:tiny',
                    f'--workdir={workdir}',
                    f'--config.num_devices={DEVICES}']) == 0
  run = Run(data_cifar_tiny(), str(workdir), write_metrics=False)
  _, state, meta = run.restore()
  run.close()
  return workdir, jax.device_get(state), meta


@pytest.mark.slow
@pytest.mark.xdist_group('data_run')
def test_a_tiny_run_trains_selects_and_exports_the_subnet(data_run):
  from bossnax import export
  from bossnax.config import load_config_file
  from bossnax.data import augment
  from bossnax.data.sources import make_source
  workdir, state, _ = data_run
  c = data_cifar_tiny()
  ranking = json.loads((workdir / 'ranking.json').read_text())
  rows = (workdir / 'scores.csv').read_text().splitlines()[1:]
  assert 1 < len(rows) <= c.search.evaluations
  spec = json.loads((workdir / 'best' / 'spec.json').read_text())
  assert spec['arch'] == ranking['best']
  assert not (workdir / 'best' / 'eval.json').exists()  # no classifier
  # the exported network computes the supernet's path
  space, arch, _ = export.load_spec(str(workdir / 'best' / 'spec.json'))
  x, _ = make_source(c.data, seed=c.seed).get('test', np.arange(32))
  x = augment.eval_view(x, c.augment.mean, c.augment.std)
  sup = space.supernet().apply(
      {'params': state['params']['backbone'],
       'batch_stats': state['batch_stats']['backbone']}, x,
      jnp.asarray(space.flatten(arch)), mode='eval', output='features')
  net, vec = space.standalone(arch)
  weights = export.load_weights(str(workdir / 'best' / 'weights'), net, vec,
                                16)
  alone = net.apply(weights, x, jnp.asarray(vec), mode='eval',
                    output='features')
  np.testing.assert_allclose(sup, alone, atol=1e-5)
  # a linear probe of it moves the classifier only, BN statistics kept
  from bossnax.retrain import Retrain
  rc = load_config_file(f'{ROOT}/configs/retrain_hytra.py:tiny')
  rc.spec = str(workdir / 'best' / 'spec.json')
  rc.init_weights = str(workdir / 'best' / 'weights')
  rc.num_devices, rc.data.image_size = DEVICES, 16
  rc.train.linear_probe = True
  rc.train.epochs = 1
  end, _ = Retrain(rc).fit(str(workdir.parent / 'probe'), stop_at=2)
  end = jax.device_get(end)
  moved = jax.tree_util.tree_map_with_path(
      lambda path, a, b: (jax.tree_util.keystr(path), bool(np.any(a != b))),
      {'params': weights['params'], 'batch_stats': weights['batch_stats']},
      {'params': end['params'], 'batch_stats': end['batch_stats']})
  moved = dict(jax.tree.leaves(moved, is_leaf=lambda x: isinstance(x, tuple)))
  assert {k for k, v in moved.items() if v} == {
      "['params']['block0']['classifier']['kernel']",
      "['params']['block0']['classifier']['bias']"}


@pytest.mark.slow
@pytest.mark.xdist_group('data_run')
def test_killed_and_resumed_equals_uninterrupted_queue_included(
    data_run, tmp_path, monkeypatch):
  """Killed before step 3 (the last checkpoint is step 2's), resumed: the
  final state (queue, its pointer, the key encoder) and the search equal
  the uninterrupted run's."""
  from conftest import cut_search, run_search
  _, ref_state, ref_meta = data_run
  c = data_cifar_tiny()
  cut = cut_search(monkeypatch, c, tmp_path / 'cut', 2)
  assert cut['block_step'] == 2
  state, meta = run_search(c, tmp_path / 'cut')
  assert meta['archs'] == ref_meta['archs']
  np.testing.assert_allclose(meta['losses'], ref_meta['losses'], rtol=1e-6)
  assert int(state['extra']['ptr']) == 3 * 16 % c.moco.queue_size
  for x, y in zip(jax.tree.leaves(state), jax.tree.leaves(ref_state),
                  strict=True):
    np.testing.assert_array_equal(x, y)
