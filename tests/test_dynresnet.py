"""DATA's DynamicResNet space: torchvision's ResNet-50 / -101 counted
exactly, GAIA-ssl's 85,293 networks, strings and bad input, sampling from
the searched values only, a masked path equal to the standalone ResNet cut
from the supernet, and batch-norm statistics kept per width (and left
alone by skipped blocks)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bossnax.nn import grouping
from bossnax.spaces.dynresnet import DynResNetSpace, resnet_cost


# torchvision's model cards: params exactly, GFLOPS (multiply-adds) 4.09 /
# 7.80 / 11.51 at 224 px.
@pytest.mark.parametrize('name,params,gmadds', [
    ('resnet50', 25_557_032, 4.09), ('resnet101', 44_549_160, 7.80)])
def test_resnets_reproduce_the_published_counts(name, params, gmadds, capsys):
  from bossnax import describe
  assert describe.main(['--space=dynresnet', f'--arch={name}']) == 0
  out = json.loads(capsys.readouterr().out)
  assert out['params'] == params
  assert out['flops'] == pytest.approx(gmadds * 1e9, rel=0.02)
  # the same network as a path of GAIA-ssl's supernet counts the same
  space = DynResNetSpace()
  assert space.flops_params(space.parse(name))[1] == params


def test_the_space_strings_and_bad_input():
  space = DynResNetSpace()
  assert space.count() == 3 * 3 ** 4 * 3 * 3 * 13 * 3 == 85_293
  assert space.to_string(space.largest()) == '64:80-160-320-640:4-6-29-4'
  assert space.to_string(space.smallest()) == '32:48-96-192-384:2-2-5-2'
  r50 = space.parse('resnet50')  # stage-3 depth 6: admitted, not searched
  assert space.to_string(r50) == '64:64-128-256-512:3-4-6-3'
  np.testing.assert_array_equal(
      space.flatten(space.from_string('64:64-128-256-512:3-4-6-3')),
      space.flatten(r50))
  with pytest.raises(ValueError, match='d3=8 is not admitted'):
    space.from_string('64:64-128-256-512:3-4-8-3')
  with pytest.raises(ValueError, match='write stem:widths:depths'):
    space.from_string('64-64-128')
  with pytest.raises(ValueError, match='too many to list'):
    space.block_paths(0)
  rng = np.random.default_rng(0)
  d3 = {space.values(space.sample(rng))[2][2] for _ in range(400)}
  assert d3 == set(range(5, 30, 2))  # searched values only, all of them
  mutated = {space.values(space.mutate(r50, rng, prob=1.0))[2][2]
             for _ in range(200)}
  assert 6 not in mutated


@pytest.fixture(scope='module')
def tiny_space():
  return DynResNetSpace(stem_widths=(4, 8), stage_widths=((4, 8), (8, 12)),
                        stage_depths=((1, 2), (1, 3)), num_classes=5,
                        image_size=16, stem='cifar')


def _trained_variables(space, x):
  """Supernet variables whose BN statistics were moved by a few paths."""
  net = space.supernet()
  v = grouping.init(net, jax.random.key(0), x,
                    jnp.asarray(space.flatten(space.largest())), mode='train')
  rng = np.random.default_rng(0)
  for _ in range(3):
    _, upd = net.apply(v, x, jnp.asarray(space.flatten(space.sample(rng))),
                       mode='train', mutable=['batch_stats'])
    v = {**v, 'batch_stats': upd['batch_stats']}
  return net, v


def test_a_path_equals_the_standalone_resnet_cut_from_the_supernet(
    tiny_space):
  space = tiny_space
  x = jax.random.normal(jax.random.key(1), (4, 16, 16, 3))
  net, v = _trained_variables(space, x)
  rng = np.random.default_rng(1)
  for arch in [space.largest(), space.smallest()] + [
      space.sample(rng) for _ in range(3)]:
    flat = jnp.asarray(space.flatten(arch))
    alone, vec = space.standalone(arch)
    cut = space.slice_variables(v, arch)
    for mode in ('eval', 'train'):
      kw = {'mutable': ['batch_stats']} if mode == 'train' else {}
      a = net.apply(v, x, flat, mode=mode, **kw)
      b = alone.apply(cut, x, jnp.asarray(vec), mode=mode, **kw)
      if mode == 'train':
        a, b = a[0], b[0]
      np.testing.assert_allclose(a, b, atol=2e-5)
    n = sum(p.size for p in jax.tree.leaves(cut['params']))
    assert n == space.flops_params(arch)[1]  # the cost model's count
    assert space.flops_params(arch) == resnet_cost(
        *space.values(arch), num_classes=5, resolution=16, stem_kind='cifar')


def test_batch_norm_statistics_are_kept_per_width_and_skipped_blocks_keep_theirs(
    tiny_space):
  space = tiny_space
  x = jax.random.normal(jax.random.key(2), (4, 16, 16, 3))
  net, v = _trained_variables(space, x)
  arch = space.from_values(4, (8, 8), (1, 1))  # width rows 0 / 0 / 1 ...
  _, upd = net.apply(v, x, jnp.asarray(space.flatten(arch)), mode='train',
                     mutable=['batch_stats'])
  old, new = v['batch_stats']['block0'], upd['batch_stats']['block0']

  def changed(*path):  # per width row: did this step move its means?
    a, b = old, new
    for k in path:
      a, b = a[k], b[k]
    return ~np.isclose(a['mean'], b['mean']).all(-1)
  # stem width 4 is row 0; stage 1 width 8 is row 1, stage 2 width 8 row 0
  np.testing.assert_array_equal(changed('stem_bn'), [True, False])
  np.testing.assert_array_equal(changed('stage1_0', 'bn1'), [False, True])
  np.testing.assert_array_equal(changed('stage2_0', 'bn3'), [True, False])
  np.testing.assert_array_equal(changed('stage2_0', 'down_bn'), [True, False])
  # depth 1: the second block of stage 1 and the later ones of stage 2 are
  # skipped, their statistics untouched
  for m in ('stage1_1', 'stage2_1', 'stage2_2'):
    for bn in ('bn1', 'bn2', 'bn3'):
      np.testing.assert_array_equal(old[m][bn]['mean'], new[m][bn]['mean'])
  # a row's channels past its width are never moved: row 0 of stage 1
  # (width 4 of 8) was trained by earlier paths, its last 4 means still 0
  row = old['stage1_0']['bn1']['mean'][0]
  assert np.abs(row[:4]).max() > 0 and not np.abs(row[4:]).any()


def test_an_elastic_resolution_gene_sets_the_cost_and_the_string():
  space = DynResNetSpace(resolutions=(192, 208, 224, 240, 256))
  assert space.count() == 85_293 * 5
  r50 = space.parse('resnet50')  # the space's own size
  assert space.to_string(r50) == '64:64-128-256-512:3-4-6-3@224'
  at192 = space.from_string('64:64-128-256-512:3-4-6-3@192')
  assert space.flops_params(at192) == resnet_cost(
      64, (64, 128, 256, 512), (3, 4, 6, 3), resolution=192)
  assert space.flops_params(at192)[0] < space.flops_params(r50)[0]
  assert space.to_string(space.largest()).endswith('@256')
  np.testing.assert_array_equal(
      space.input_sizes(np.stack([space.flatten(at192),
                                  space.flatten(r50)])), [192, 224])
  with pytest.raises(ValueError, match='resolution=200 is not admitted'):
    space.from_string('64:64-128-256-512:3-4-6-3@200')
  with pytest.raises(ValueError, match='needs space.resolutions'):
    DynResNetSpace().from_string('64:64-128-256-512:3-4-6-3@192')
  assert DynResNetSpace().input_sizes(np.zeros((2, 9), np.int32)) is None


def test_candidates_are_scored_at_their_own_resolution():
  """Mixed resolutions in one call: each candidate's score is the one it
  gets scored alone on the images resized to its resolution, and the
  same network scores differently at another resolution."""
  from bossnax import parallel
  from bossnax.config import load_config_file
  from bossnax.engine.evaluator import Evaluator
  from conftest import ROOT, trainer
  c = load_config_file(f'{ROOT}/configs/data_cifar.py:tiny')
  c.space.resolutions = (12, 16)
  c.data.image_size = 16
  c.search.batch_size = c.search.calib_batch = 8
  tr = trainer(c, image_shape=(16, 16, 3))
  state = jax.device_put(tr.start_block(tr.init_state(0), 0),
                         parallel.replicated(tr.mesh))
  ev = Evaluator(c, tr.space, tr.model, tr.objective, tr.mesh)
  space = tr.space
  texts = ['8:4-8:2-2@16', '8:4-8:2-2@12', '4:4-8:1-2@12']
  archs = np.stack([space.flatten(space.from_string(t)) for t in texts])
  rng = np.random.default_rng(0)
  val = rng.integers(0, 255, (8, 16, 16, 3), np.uint8)
  calib = rng.integers(0, 255, (8, 16, 16, 3), np.uint8)
  mixed = ev.score_archs(state, 0, archs, val, calib)
  alone16 = ev.score_archs(state, 0, archs[:1], val, calib)
  small = lambda x: ev._resized(x, 12)
  assert small(val).shape == (8, 12, 12, 3)
  alone12 = ev._score_archs(state, 0, archs[1:], small(val), small(calib))
  np.testing.assert_allclose(mixed, np.concatenate([alone16, alone12]),
                             rtol=1e-5, atol=1e-7)
  assert abs(mixed[0] - mixed[1]) > 1e-6  # the same body at 16 and 12 px
