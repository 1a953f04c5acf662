"""The HyTra supernet: standalone networks, weight export, stride sharing,
the attention blocks' zero-initialised scale, prefix caching and vectorised
scoring, on the CPU preset's 4-layer fabric (one layer per block: compiling
the candidates is what costs time on a CPU). One tiny trainer state is
shared by the module."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bossnax import export, parallel
from bossnax.config import load_config_file
from bossnax.spaces import make_space
from bossnax.spaces.hytra import NAMED, HyTraSpace
from bossnax.engine.evaluator import Evaluator
from conftest import ROOT, sample_archs, trainer as make_trainer

pytestmark = pytest.mark.slow
SIZE = 16
PATH = np.array([[2, 0, 0, 0]], np.int32)  # block 0: ResAtt@1/16 (choice 2)


@pytest.fixture(scope='module')
def setup():
  c = load_config_file(str(ROOT / 'configs/hytra_cifar.py') + ':tiny')
  c.train.warmup_epochs = 0.0  # the first step already moves the weights
  c.train.paths_per_step = 1
  space = make_space(c.space)
  trainer = make_trainer(c, steps_per_epoch=4, image_shape=(SIZE, SIZE, 3))
  mesh = trainer.mesh
  state0 = trainer.init_state(0)
  att_before = np.asarray(state0['params']['backbone']['block0'][
      'layer0_s2']['att']['bn3']['scale'])
  # One step of block 1 on its path ResAtt@1/16 (choice id 2).
  images = np.random.default_rng(0).integers(
      0, 255, (1, 16, SIZE, SIZE, 3), dtype=np.uint8)
  images = parallel.global_batch(mesh, images, batch_axis=1)
  state, metrics = trainer.step_fn(0)(state0, images, jax.random.key(0),
                                      PATH, None)
  return c, space, trainer, state, att_before, float(metrics['loss'])


def _noisy_backbone(state, scale=0.05):
  """The supernet's variables with every parameter moved off its init, so
  zero-initialised scales take part in the comparison."""
  params = state['params']['backbone']
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(3), len(leaves))
  noisy = [p + scale * jax.random.normal(k, p.shape)
           for p, k in zip(leaves, keys)]
  return {'params': jax.tree.unflatten(tree, noisy),
          'batch_stats': state['batch_stats']['backbone']}


def test_attention_scale_trains(setup):
  """The official LARS rule leaves every ResAtt's zero-initialised BN scale
  at zero; here norm parameters are outside LARS and weight decay."""
  _, _, _, state, before, loss = setup
  after = np.asarray(state['params']['backbone']['block0']['layer0_s2'][
      'att']['bn3']['scale'])
  assert np.all(before == 0) and np.isfinite(loss)
  assert np.abs(after).max() > 0


def test_stride_variants_share_the_body(setup):
  _, space, trainer, state, _, _ = setup
  cand = state['params']['backbone']['block2']['layer2_s2']['conv']
  # stride-1 and stride-2 entries, the stride-2 shortcut (the stride-1 one
  # is the identity: same width), one shared body
  assert set(cand) == {'enter1', 'enter2', 'short2', 'conv', 'bn2',
                       'expand', 'bn3'}
  # A path entering 1/16 at layer 3 from 1/8 uses enter2/short2; one that
  # stays at 1/16 uses enter1; both use the same 3x3 conv.
  down = space.from_stages([[1], [1], [1, 1], []])
  stay = space.from_stages([[], [1], [1, 1, 1], []])
  for arch, tag in ((down, '2'), (stay, '1')):
    net, _ = space.standalone(arch)
    v = space.slice_variables(_noisy_backbone(state), arch, SIZE)
    site = v['params']['block2']['layer2_s2']['conv']
    assert 'enter' + tag in site and ('short2' in site) == (tag == '2')
    assert len([k for k in site if k.startswith('enter')]) == 1
    np.testing.assert_array_equal(site['conv']['kernel'],
                                  _noisy_backbone(state)['params']['block2'][
                                      'layer2_s2']['conv']['conv']['kernel'])


@pytest.mark.parametrize('name', ['[[1],[1],[0,1],[]]', '[[],[],[0],[0,0,0]]',
                                  '[[1],[1],[1],[1]]'])
def test_standalone_with_exported_weights_equals_supernet(setup, name,
                                                          tmp_path):
  c, space, trainer, state, _, _ = setup
  arch = space.parse(name)
  flat = jnp.asarray(space.flatten(arch))
  variables = _noisy_backbone(state)
  x = jax.random.normal(jax.random.key(1), (4, SIZE, SIZE, 3))
  supernet = trainer.model.backbone
  want = supernet.apply(variables, x, flat, mode='eval', output='logits')
  feats = supernet.apply(variables, x, flat, block=3, mode='eval',
                         output='features')
  net, vec = space.standalone(arch)
  sliced = space.slice_variables(variables, arch, SIZE)
  # through the files a user gets from `python -m bossnax.export`
  export.save_weights(tmp_path / 'weights', sliced)
  loaded = export.load_weights(tmp_path / 'weights', net, vec, SIZE)
  got = net.apply(loaded, x, vec, mode='eval', output='logits')
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  last = space.to_stages(arch)
  stage = max(s for s in range(4) if last[s])
  got_f = net.apply(loaded, x, vec, block=3, mode='eval', output='features')
  np.testing.assert_allclose(got_f, feats[stage], rtol=1e-4, atol=1e-5)
  # the standalone network holds only its path's variables
  n_sub = sum(p.size for p in jax.tree.leaves(loaded['params']))
  n_sup = sum(p.size for p in jax.tree.leaves(variables['params']))
  assert n_sub < n_sup / 3


def test_corrupt_weights_fail_with_one_line(setup, tmp_path):
  _, space, _, state, _, _ = setup
  arch = space.parse('[[1],[1],[0,1],[]]')
  export.save_weights(tmp_path / 'w', space.slice_variables(
      _noisy_backbone(state), arch, SIZE))
  net, vec = space.standalone(space.parse('[[],[],[0],[0,0,0]]'))
  with pytest.raises(ValueError, match='export them again'):
    export.load_weights(tmp_path / 'w', net, vec, SIZE)


def test_vectorised_scoring_equals_loop_hytra(setup):
  """Block 4 after a prefix that ends at 1/16: 4 paths (ResConv or
  ResAtt, at 1/16 or down to 1/32)."""
  c, space, trainer, state, _, _ = setup
  scorer = Evaluator(c, space, trainer.model, trainer.objective,
                     trainer.mesh)
  prefix = space.flatten(space.parse('[[1],[1],[0,1],[]]'))
  rng = np.random.default_rng(1)
  val = rng.integers(0, 255, (24, SIZE, SIZE, 3), dtype=np.uint8)
  w = np.ones(24, np.float32)
  val = np.concatenate([val, val[-8:]])  # a padded last batch
  w = np.concatenate([w, np.zeros(8, np.float32)])
  calib = rng.integers(0, 255, (16, SIZE, SIZE, 3), dtype=np.uint8)
  tab, fast = scorer.score_block(state, 3, prefix, val, calib, w)
  tab2, slow = scorer.score_block_loop(state, 3, prefix, val, calib, w)
  assert len(tab) == 4 and (tab == tab2).all()
  np.testing.assert_allclose(fast, slow, rtol=2e-4, atol=1e-5)


def test_named_architectures_run_standalone():
  """Forward shapes of every named architecture (ImageNet stem, 64x64)."""
  for name in list(NAMED) + ['BossNet-T1']:
    space = HyTraSpace(num_classes=7, base_width=4, heads=(1, 2),
                       last_stride=1 if name == 'BossNet-T1' else 2)
    net, vec = space.standalone(space.parse(name))
    x = jnp.ones((2, 64, 64, 3))
    v = jax.eval_shape(lambda: net.init(jax.random.key(0), x, vec))
    out = jax.eval_shape(lambda v: net.apply(v, x, vec, mode='eval',
                                             output='logits'), v)
    assert out.shape == (2, 7), name


def test_export_spec_and_weights_feed_retraining(setup, tmp_path):
  """export -> retrain: the spec rebuilds the space and path, and
  init_weights starts retraining from the supernet's weights."""
  c, space, trainer, state, _, _ = setup
  arch = space.parse('[[1],[1],[0,1],[]]')
  spec = export.make_spec(c.space, space, arch)
  with open(tmp_path / 'spec.json', 'w') as f:
    import json
    json.dump(spec, f)
  sliced = export.standalone_variables(space, trainer.objective, state,
                                       arch)
  export.save_weights(tmp_path / 'weights', sliced)
  from bossnax import retrain
  rc = load_config_file(str(ROOT / 'configs/retrain_hytra.py') + ':tiny')
  rc.spec = str(tmp_path / 'spec.json')
  rc.init_weights = str(tmp_path / 'weights')
  rc.data.image_size = SIZE
  run = retrain.Retrain(rc)
  assert run.space.to_string(run.arch) == space.to_string(arch)
  st = run.init_state(0)
  got = st['params']['block2']['layer2_s2']['att']['expand']['kernel']
  np.testing.assert_array_equal(
      got,
      sliced['params']['block2']['layer2_s2']['att']['expand']['kernel'])
  bad = tmp_path / 'bad.json'
  bad.write_text('{"format": "other"}')
  rc.spec = str(bad)
  with pytest.raises(ValueError, match='not a bossnax architecture spec'):
    retrain.Retrain(rc)


def test_prefix_once_per_step_equals_prefix_per_path_hytra(setup):
  """Block 3's forward pass with the finished blocks' slots computed once
  for all paths equals the pass that runs them inside every path: the same
  outputs for both views and the same merged batch statistics (the
  function the prefix cache changes; the step around it is shared)."""
  from bossnax.engine import supernet
  c, space, trainer, state, _, _ = setup
  prefix = jnp.asarray(space.flatten(space.parse('[[1],[1],[0,1],[]]')))
  views = tuple(jax.random.normal(jax.random.key(i), (8, SIZE, SIZE, 3))
                for i in range(2))
  out = []
  for cache in (True, False):
    cc = c.copy_and_resolve_references()
    cc.train.cache_prefix = cache
    cc.train.paths_per_step = 2
    tr = make_trainer(cc, steps_per_epoch=4, image_shape=(SIZE, SIZE, 3))
    spec = tr.specs[3]
    archs = sample_archs(tr, 3, 0, prefix)
    fn = jax.jit(lambda p, st, spec=spec, archs=archs: supernet.forward_paths(
        spec, p, st, archs, views, per_path=False))
    out.append(jax.device_get(fn(state['params'], state['batch_stats'])))
  assert not np.array_equal(archs[0], archs[1])  # two paths of block 3
  for a, b in zip(jax.tree.leaves(out[0]), jax.tree.leaves(out[1]),
                  strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_remat_step_equals_plain_step_hytra(setup):
  """train.remat=True (every site under nn.remat, recomputed in the
  backward pass) changes the step's memory, not its maths: from the same
  state, batch and key it gives setup's plain step (block 0, path
  ResAtt@1/16), and the traced step holds the remat primitive only when
  asked for. One compile: the plain step is setup's."""
  c, space, trainer, state, _, loss = setup
  cr = c.copy_and_resolve_references()
  cr.train.remat = True
  remat = make_trainer(cr, steps_per_epoch=4, image_shape=(SIZE, SIZE, 3))
  state0 = trainer.init_state(0)  # setup's initial state, rebuilt
  images = np.random.default_rng(0).integers(
      0, 255, (1, 16, SIZE, SIZE, 3), dtype=np.uint8)
  images = parallel.global_batch(trainer.mesh, images, batch_axis=1)
  args = (state0, images, jax.random.key(0), PATH, None)
  jaxprs = [str(t.step_fn(0).trace(*args).jaxpr) for t in (trainer, remat)]
  assert 'remat' not in jaxprs[0] and 'remat' in jaxprs[1], [
      j.count('remat') for j in jaxprs]
  new, m = remat.step_fn(0)(*args)  # donates state0
  assert float(m['loss']) == pytest.approx(loss, rel=1e-5)
  for part in ('params', 'batch_stats', 'extra', 'opt_state'):
    a, b = jax.tree.leaves(state[part]), jax.tree.leaves(new[part])
    assert len(a) == len(b) > 0, part
    for x, y in zip(a, b):
      np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=part)
