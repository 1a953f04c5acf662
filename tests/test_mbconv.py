"""The MBConv space: counts against published figures and XLA, strings,
op shapes, the shared shortcut, fair sampling, supernet path = standalone."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bossnax.nn import grouping
from bossnax.spaces import mbconv_layouts as L
from bossnax.spaces.mbconv import MBConvSpace
from conftest import ROOT, SHARED

BENCH = SHARED / 'benchmarks' / 'mbconv_23_archs_imagenet.json'


@pytest.fixture(scope='module')
def space():
  return MBConvSpace()


def test_named_networks_reproduce_the_published_counts():
  # EfficientNet-B0: 5,288,548 parameters, 0.39 B MAdds (Tan & Le 2019);
  # MobileNetV2 1.0: 3,504,872 parameters, 300 M MAdds (Sandler et al.).
  madds, params = L.count('efficientnet_b0')
  assert params == 5_288_548
  assert abs(madds / 390e6 - 1) < 0.02
  madds, params = L.count('mobilenet_v2')
  assert params == 3_504_872
  assert abs(madds / 300e6 - 1) < 0.02


def test_dna_c_and_dnas_flops_convention():
  """DNA-c (changlin31/DNA retraining/model.py) is a path of the 'dna'
  layout: 5.3 M parameters and 466 M FLOPs published (DNA README), FLOPs
  as DNA's counter counts them (BN, biases, pooling too); that counter's
  EfficientNet-B0 reference in DNA's process_potential.py is 399,362 K."""
  dna = MBConvSpace(layout='dna')
  arch = dna.from_string('31|3313|3133|1332|3233|1')
  madds, params = dna.flops_params(arch)
  assert round(params / 1e6, 1) == 5.3 and round(madds / 1e6, 1) == 450.1
  flops, _ = L.network_cost(dna.lay, dna.ops(arch), convention='ptflops')
  assert round(flops / 1e6) == 466
  assert L.count('dna_c') == (madds, params)  # the fixed network, the same
  # DNA-a and DNA-d (own depths and widths) reproduce their published
  # figures too; DNA-b its parameters (its 394 M FLOPs do not: 405.8 M).
  for name, (pub_flops, pub_params) in {'dna_a': (348, 4.2), 'dna_b': (None, 4.9),
                                         'dna_d': (611, 6.4)}.items():
    flops, params = L.count(name, convention='ptflops')
    assert round(params / 1e6, 1) == pub_params, name
    assert pub_flops is None or round(flops / 1e6) == pub_flops, name
  b0, _ = L.count('efficientnet_b0', convention='ptflops')
  assert abs(b0 - 399_362e3) < 2e3
  with pytest.raises(ValueError, match="convention 'macs'"):
    L.count('efficientnet_b0', convention='macs')


def test_structure_strings_and_widths(space):
  assert space.count() == 4 ** 18
  assert [len(space.block_paths(k)) for k in range(5)] == [16, 256, 256, 256,
                                                          256]
  arch = space.parse('11|1111|1101|1011|1101')
  assert space.to_string(arch) == '11|1111|1101|1011|1101'
  for bad in ('11|1111|1101|1011', '11|1111|1101|1011|1104', '1|11111|1101|'
              '1011|1101'):
    with pytest.raises(ValueError, match='one digit 0-3 per layer'):
      space.parse(bad)
  # hidden width = make_divisible(in x expansion); SE from the layer input
  assert L.make_divisible(24 * 6) == 144 and L.make_divisible(40 * 3) == 120
  assert L.se_width(space.lay, 24) == 6 and L.se_width(space.lay, 112) == 28
  layers = L.searched_layers(space.lay)
  assert len(layers) == 18 and layers[0][2:] == (16, 24, 2)
  assert [l[4] for l in layers if l[1] == 0] == [2, 2, 2, 1, 2]


def test_candidates_and_the_shared_shortcut(space):
  net = space.supernet()
  x = jnp.zeros((1, 224, 224, 3))
  arch = jnp.asarray(space.flatten(space.default_arch()))
  shapes = jax.eval_shape(lambda: grouping.init(
      net, jax.random.key(0), x, arch, block=0, mode='train'))['params']
  layer0 = shapes['block0']['layer0']  # 16 -> 24, stride 2
  assert set(layer0) == {'op0', 'op1', 'op2', 'op3', 'shortcut'}
  assert layer0['op0']['expand']['conv']['kernel'].shape == (1, 1, 16, 96)
  assert layer0['op1']['dw']['conv']['kernel'].shape == (5, 5, 1, 96)
  assert layer0['op2']['expand']['conv']['kernel'].shape == (1, 1, 16, 48)
  assert layer0['op0']['se']['reduce']['kernel'].shape == (1, 1, 96, 4)
  assert layer0['shortcut']['proj']['conv']['kernel'].shape == (1, 1, 16, 24)
  assert 'shortcut' not in shapes['block0']['layer1']  # 24 -> 24: identity
  # the counter counts exactly the parameters the module creates
  for text in ('11|1111|1101|1011|1101', '02|3120|0000|3333|1212'):
    alone, flat = space.standalone(space.parse(text))
    p = jax.eval_shape(lambda: alone.init(jax.random.key(0), x, flat,
                                          mode='eval', output='logits'))
    n = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(p['params']))
    assert n == space.flops_params(space.parse(text))[1]


@pytest.mark.parametrize('text', ['11|1111|1101|1011|1101',
                                  '00|0000|0000|0000|0000',
                                  '33|3333|3333|3333|3333'])
def test_madds_agree_with_xla(space, text):
  # XLA counts 2 FLOPs per multiply-add and also the elementwise work MAdds
  # leave out (batch norm, SiLU, SE gates, residual adds): 6-7% here.
  arch = space.parse(text)
  net, flat = space.standalone(arch)
  x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
  v = jax.eval_shape(lambda x: net.init(jax.random.key(0), x, flat,
                                        mode='eval', output='logits'), x)
  flops = jax.jit(lambda v, x: net.apply(v, x, flat, mode='eval',
                                         output='logits')).lower(
      v, x).cost_analysis()['flops']
  madds = space.flops_params(arch)[0]
  assert 1.0 <= flops / (2 * madds) <= 1.1, flops / (2 * madds)


def test_fair_sampling_uses_every_candidate_of_every_layer_once(space):
  from bossnax.samplers import PathSampler
  sampler = PathSampler(space, 4, fair=True, seed=0)
  for block in (0, 3):
    table = space.block_paths(block)
    paths = sampler.sample(block, 5, table)
    assert paths.shape == (4, space.blocks[block].num_layers)
    assert (np.sort(paths, 0) == np.arange(4)[:, None]).all()


@pytest.fixture(scope='module')
def tiny():
  """configs/mbconv_cifar.py:tiny (one layer per stage, width 8, 16x16
  images): its config, trainer and initial state (shared: initialising
  every candidate is most of a test's time)."""
  from bossnax.config import load_config_file
  from conftest import trainer
  c = load_config_file(str(ROOT / 'configs' / 'mbconv_cifar.py') + ':tiny')
  c.num_devices = 2
  tr = trainer(c, image_shape=(16, 16, 3))
  return c, tr, jax.device_get(tr.init_state(0))


def test_supernet_path_equals_the_standalone_network(tiny):
  _, tr, state = tiny
  small, net = tr.space, tr.model.backbone
  variables = {'params': state['params']['backbone'],
               'batch_stats': state['batch_stats']['backbone']}
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 16, 16, 3)),
                  jnp.float32)
  apply = jax.jit(lambda v, a: net.apply(v, x, a, mode='eval',
                                         output='logits'))
  for text in ('1|3|2|0|3', '2|0|3|1|0'):
    arch = small.parse(text)
    alone, flat = small.standalone(arch)
    want = alone.apply(small.slice_variables(variables, arch), x, flat,
                       mode='eval', output='logits')
    got = apply(variables, jnp.asarray(flat))
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_describe_cli_counts_the_benchmark_and_named_networks():
  run = lambda *a: subprocess.run(
      [sys.executable, '-m', 'bossnax.describe', '--space=mbconv', *a],
      capture_output=True, text=True, cwd=ROOT)
  out = run('--arch=efficientnet_b0')
  assert json.loads(out.stdout)['params'] == 5_288_548, out.stderr
  bad = run('--arch=11|11')
  assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
  if BENCH.exists():
    rows = [json.loads(l) for l in run(f'--bench={BENCH}').stdout.split(
        '\n') if l]
    assert len(rows) == 23 and rows[0]['arch'] == '11|1111|1101|1011|1101'
    assert all(250e6 < r['flops'] < 600e6 for r in rows)


def test_a_block_trains_and_scores_through_the_engine(tiny):
  """configs/mbconv_cifar.py:tiny, block 0: one fair step (4 paths)
  changes only block 0's variables; scoring its 4 paths in one pass equals
  the per-path loop."""
  from bossnax.engine.evaluator import Evaluator
  from bossnax.engine.supernet import block_mask
  from conftest import batch, sample_archs
  c, tr, state0 = tiny
  init = tr.start_block(jax.device_put(state0), 0)
  prefix = np.zeros(5, np.int32)
  archs = sample_archs(tr, 0, 0, prefix)
  assert sorted(archs[:, 0].tolist()) == [0, 1, 2, 3]  # fair
  before = jax.device_get(init)
  state, metrics = tr.step_fn(0)(init, batch(tr, size=16), jax.random.key(0),
                                 archs, None)
  state = jax.device_get(state)
  assert np.isfinite(float(metrics['loss']))
  mask = block_mask(before['params'], 0)
  changed = jax.tree.map(lambda a, b: bool(np.any(a != b)),
                         before['params'], state['params'])
  for m, ch in zip(jax.tree.leaves(mask), jax.tree.leaves(changed)):
    assert ch <= m  # nothing outside block 0 moves
  assert any(jax.tree.leaves(changed))
  scorer = Evaluator(c, tr.space, tr.model, tr.objective, tr.mesh)
  rng = np.random.default_rng(1)
  val = rng.integers(0, 255, (16, 16, 16, 3), dtype=np.uint8)
  w = np.ones(16, np.float32)
  calib = rng.integers(0, 255, (16, 16, 16, 3), dtype=np.uint8)
  tab, fast = scorer.score_block(state, 0, prefix, val, calib, w)
  tab2, slow = scorer.score_block_loop(state, 0, prefix, val, calib, w)
  assert len(tab) == 4 and (tab == tab2).all()
  np.testing.assert_allclose(fast, slow, rtol=2e-4, atol=1e-5)


@pytest.mark.skipif(not BENCH.exists(), reason='needs ../shared')
def test_the_searcher_scores_the_benchmark_and_rank_reads_it(space,
                                                            tmp_path):
  """A space too large to enumerate: the ranking scores the 23 benchmark
  architectures and the best found from the block tables (every block's
  loss a made-up function of its path), and bossnax.rank reads the JSON
  with the size baselines beside."""
  from bossnax import rank
  from bossnax.searchers.blockwise import BlockwiseBeam
  from bossnax.searchers.strategies import Plan
  searcher = BlockwiseBeam(space, archs_file=str(BENCH))
  state = searcher.initial_state()
  loss = lambda path: float(np.sum((np.asarray(path) + 1) ** 2))
  for k in range(space.num_blocks):
    table = space.block_paths(k)
    state, _ = searcher.search_block(state, k, lambda prefix: (
        table, np.array([loss(p) for p in table])))
  ranking = searcher.ranking(state)
  archs, _ = space.benchmark(str(BENCH))
  got = {r[0]: r[1] for r in ranking.rows}
  assert ranking.best == '00|0000|0000|0000|0000'
  for a in archs:
    assert got[space.to_string(a)] == -sum(loss(p) for p in a)
  # and, exact from the tables (costs add up over blocks), the best overall
  # and the Pareto front: the cheapest and the best architecture are on it
  assert ranking.rows[0][0] == ranking.best
  front = ranking.summary()['pareto']
  assert front[-1]['arch'] == ranking.best
  assert front[0]['arch'] == '22|2222|2222|2222|2222'  # all MB3 3x3
  # a budget on both costs is not exact in auto: said, not refused
  searcher.plan = Plan(budgets=((400.0, 5.0),))
  assert 'bounds both costs' in searcher.ranking(state).note
  path = tmp_path / 'scores.csv'
  with open(path, 'w') as f:
    f.write('arch,score,flops,params\n')
    for r in ranking.rows:
      f.write(','.join(str(v) for v in r) + '\n')
  result = rank.evaluate_files(str(path), str(BENCH))
  assert result['n'] == 23
  assert set(result['baselines']) == {'params', 'flops', 'log_hidden'}
  assert abs(result['baselines']['flops']['kendall'] - 0.755) < 1e-3


@pytest.mark.slow
def test_export_and_retrain_an_mbconv_path_through_the_clis(tiny, tmp_path):
  """`bossnax.export` writes an MBConv path's spec, and `bossnax.retrain`
  trains that network from the supernet's weights cut out for it (what
  export writes from a run's checkpoint: standalone_variables)."""
  from bossnax import export, retrain
  _, tr, state = tiny
  text, out = '1|3|2|0|3', tmp_path / 'best'
  assert export.main([f'--config={ROOT}/configs/mbconv_cifar.py:tiny',
                      '--weights=none', f'--arch={text}',
                      f'--out={out}']) == 0
  export.save_weights(out / 'weights', export.standalone_variables(
      tr.space, tr.objective, state, tr.space.parse(text)))
  assert retrain.main([f'--config={ROOT}/configs/retrain_hytra.py:tiny',
                       f'--config.spec={out}/spec.json',
                       f'--config.init_weights={out}/weights',
                       '--config.data.image_size=16',
                       '--config.train.epochs=1',
                       f'--workdir={tmp_path}/rt']) == 0
  result = json.loads((tmp_path / 'rt' / 'retrain_result.json').read_text())
  assert (result['space'], result['arch']) == ('mbconv', text)
  assert 0.0 <= result['top1'] <= result['top5'] <= 1.0

