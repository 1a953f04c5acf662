"""HyTra cost model, encodings and counts against the paper and the official
counter."""

import json
import subprocess
import sys

import numpy as np
import pytest

from bossnax.spaces.hytra import NAMED, HyTraSpace
from conftest import ROOT

# BossNAS Table 1, MAdds at 224x224 (G)
TABLE1 = {'ResNet50-T': 4.1, 'BoT50-T': 3.9, 'ViT-T/16': 3.2, 'ViT-T/32': 2.9,
          'Random-T': 3.7, 'DNA-T': 3.9, 'UnNAS-T': 3.7, 'BossNet-T0': 3.4,
          'BossNet-T1': 7.9}


@pytest.fixture(scope='module')
def space():
  return HyTraSpace(restricted=False)


@pytest.mark.parametrize('name', sorted(TABLE1))
def test_named_madds_match_the_paper(space, name):
  d = space.describe_named(name)
  assert abs(d['flops'] / 1e9 - TABLE1[name]) <= 0.1 + 1e-9, d


def test_exact_official_counter_figures(space):
  d = space.describe_named('BossNet-T0')
  assert d['flops'] == 3_441_888_768  # boss_madds.py, without SE
  assert round(d['params'] / 1e6, 2) == 37.23
  assert space.describe_named('BossNet-T0', 288)['flops_G'] == pytest.approx(
      5.7, abs=0.05)
  assert space.describe_named('BossNet-T1', 256)['flops_G'] == pytest.approx(
      10.5, abs=0.05)


def test_counts():
  assert HyTraSpace(restricted=False).count() == 2_818_103
  restricted = HyTraSpace()
  assert restricted.count() == 2_777_600
  # the block tables cover exactly the restricted space
  total = 0
  for p0 in restricted.block_paths(0):
    for p1 in restricted.block_paths(1, (p0,)):
      n2 = {}
      for p2 in restricted.block_paths(2, (p0, p1)):
        key = int(p2[-1])
        if key not in n2:
          n2[key] = len(restricted.block_paths(3, (p0, p1, p2)))
        total += n2[key]
  assert total == restricted.count()


def test_encodings_round_trip(space):
  for name, stages in NAMED.items():
    arch = space.parse(name)
    assert space.to_stages(arch) == stages
    assert space.from_string(space.to_string(arch)) is not None
    np.testing.assert_array_equal(space.flatten(space.from_string(
        space.to_string(arch))), space.flatten(arch))
  with pytest.raises(ValueError, match='only at 1/16 and 1/32'):
    space.from_stages([[0], [1], [1] * 7, [1] * 7])
  with pytest.raises(ValueError, match='16 block types'):
    space.from_stages([[1], [1], [1], [1]])


def test_describe_cli_and_picture(tmp_path):
  png = tmp_path / 't0.png'
  out = subprocess.run([sys.executable, '-m', 'bossnax.describe',
                        '--space=hytra', '--arch=BossNet-T0',
                        f'--picture={png}'], capture_output=True, text=True,
                       cwd=ROOT, check=True)
  d = json.loads(out.stdout)
  assert d['flops'] == 3_441_888_768 and png.stat().st_size > 5000
  bad = subprocess.run([sys.executable, '-m', 'bossnax.describe',
                        '--space=hytra', '--arch=BossNet-T9'],
                       capture_output=True, text=True, cwd=ROOT)
  assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_imagenet_config_builds_the_paper_supernet():
  """configs/hytra_imagenet.py: the 16-layer, full-width supernet's state
  builds shape-first (nothing is allocated)."""
  import jax
  from bossnax.config import load_config_file
  from bossnax.spaces import make_space
  from conftest import trainer
  c = load_config_file(str(ROOT / 'configs/hytra_imagenet.py'))
  space = make_space(c.space)
  assert space.count() == 2_777_600 and space.num_layers == 16
  tr = trainer(c, devices=1, steps_per_epoch=10, image_shape=(224, 224, 3))
  shapes = tr.state_shapes()
  backbone = shapes['params']['backbone']
  assert set(backbone['block3']['layer15_s3']) == {'att', 'conv'}
  # blocks 3-4 only at 1/16 and 1/32
  assert 'layer15_s1' not in backbone['block3']
  # the standalone T0 is a subtree of the supernet
  net, vec = space.standalone(space.parse('BossNet-T0'))
  import jax.numpy as jnp
  alone = jax.eval_shape(lambda: net.init(jax.random.key(0),
                                          jnp.zeros((1, 224, 224, 3)), vec))
  assert set(alone['params']) == set(backbone)  # block0..block3
  for k, group in alone['params'].items():
    assert set(group) <= set(backbone[k]), k
  # the whole 224 px search forward traces for the first and the last block
  variables = {'params': shapes['params'],
               'batch_stats': shapes['batch_stats']}
  x = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)
  for k in (0, 3):
    (z, q), _ = jax.eval_shape(
        lambda v, x: tr.model.apply(v, x, vec, block=k, mode='train',
                                    mutable=['batch_stats']), variables, x)
    assert z.shape == q.shape == (2, c.model.proj_dim)


def test_block_ends_fix_where_blocks_end():
  """space.block_ends (method=dna on HyTra): the count is the product of
  independent block tables, the architectures ending there stay valid and
  the others do not; an impossible list fails in one line."""
  free = HyTraSpace()
  ends = free.block_end_stages(free.parse('ResNet50-T'))
  assert ends == (1, 2, 2, 3) == free.block_end_stages(free.parse('DNA-T'))
  space = HyTraSpace(block_ends=ends)
  sizes = [len(space.block_paths(k, space.smallest()[:k])) for k in range(4)]
  assert sizes == [4, 30, 16, 64] and space.count() == 4 * 30 * 16 * 64
  assert space.is_valid(space.parse('DNA-T'))
  assert not space.is_valid(space.parse('BossNet-T0'))
  with pytest.raises(ValueError, match='no architecture of the space ends'):
    HyTraSpace(block_ends=(3, 0, 2, 3))
  with pytest.raises(ValueError, match='give a stage 0..3'):
    HyTraSpace(block_ends=(1, 2))
