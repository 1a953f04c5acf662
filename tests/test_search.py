"""Population-centre scoring: the vectorised pass equals a per-path loop;
block tables combine into architecture scores as the hand sum says."""

import jax
import numpy as np
import pytest

from bossnax import parallel, search, width_groups
from bossnax.spaces import make_space
from bossnax.spaces.nats import NATSSpace
from bossnax.train import Trainer
from test_train import _run_steps, tiny_config


@pytest.fixture(scope='module')
def setup():
  c = tiny_config()
  space = make_space(c.space)
  trainer = Trainer(c, space, parallel.make_mesh(4), steps_per_epoch=4)
  state, _ = _run_steps(trainer, 1, 2, prefix=np.array([1, 0, 0, 0, 0]))
  state = jax.device_put(state, parallel.replicated(trainer.mesh))
  rng = np.random.default_rng(0)
  val = rng.integers(0, 255, (32, 32, 32, 3), np.uint8)
  calib = rng.integers(0, 255, (16, 32, 32, 3), np.uint8)
  return c, space, trainer, state, val, calib


@pytest.mark.parametrize('recalibrate,centre,chunk,groups', [
    (True, 'normalized', 16, 1), (False, 'raw', 3, 1),
    (True, 'normalized', 16, 2), (False, 'raw', 1, 2)])
def test_vectorised_scores_equal_per_path_loop(setup, recalibrate, centre,
                                               chunk, groups):
  """Also with the paths grouped by width into narrowed supernets (groups=2:
  each of the 4 paths of block 1 in its own narrowed net)."""
  c, space, trainer, state, val, calib = setup
  c = c.copy_and_resolve_references()
  c.search.recalibrate_bn = recalibrate
  c.search.centre = centre
  c.search.path_chunk = chunk
  c.search.width_groups = groups
  scorer = search.Scorer(c, space, trainer.model, trainer.mesh)
  prefix = np.array([1, 0, 0, 0, 0], np.int32)
  table, vec = scorer.score_block(state, 1, prefix, val, calib)
  table2, loop = scorer.score_block_loop(state, 1, prefix, val, calib)
  np.testing.assert_array_equal(table, table2)
  assert table.shape == (4, 2) and np.all(np.isfinite(vec))
  np.testing.assert_allclose(vec, loop, rtol=1e-4, atol=1e-5)
  assert np.ptp(vec) > 0  # paths are told apart


def test_ragged_last_batch_counts_every_image_once(setup):
  """20 images at batch 16: the padded tail weighs nothing, so the scores
  equal those of 32 images of which the last 12 have weight 0 (same views
  for the first 20), and the per-path loop agrees."""
  c, space, trainer, state, val, calib = setup
  c = c.copy_and_resolve_references()
  c.search.batch_size = 16
  scorer = search.Scorer(c, space, trainer.model, trainer.mesh)
  prefix = np.array([1, 0, 0, 0, 0], np.int32)
  _, ragged = scorer.score_block(state, 1, prefix, val[:20], calib)
  w = np.r_[np.ones(20), np.zeros(12)].astype(np.float32)
  _, weighted = scorer.score_block(state, 1, prefix, val, calib, w)
  _, full = scorer.score_block(state, 1, prefix, val, calib)
  _, loop = scorer.score_block_loop(state, 1, prefix, val[:20], calib)
  np.testing.assert_allclose(ragged, weighted, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(ragged, loop, rtol=1e-4, atol=1e-5)
  assert np.abs(ragged - full).max() > 1e-6  # the 12 extra images do count


def test_more_view_pairs_average_over_pairs(setup):
  """search.view_pairs=2: the first pair of each image is the one-pair
  view, the second a new one; the vectorised pass still equals the loop and
  the scores move."""
  c, space, trainer, state, val, calib = setup
  c = c.copy_and_resolve_references()
  one = search.Scorer(c, space, trainer.model, trainer.mesh)
  c = c.copy_and_resolve_references()
  c.search.view_pairs = 0
  with pytest.raises(ValueError, match='search.view_pairs=0: use 1 or more'):
    search.Scorer(c, space, trainer.model, trainer.mesh)
  c.search.view_pairs = 2
  two = search.Scorer(c, space, trainer.model, trainer.mesh)
  pairs1 = list(one.view_pairs(val, 16))
  pairs2 = list(two.view_pairs(val, 16))
  assert len(pairs2) == 2 * len(pairs1)
  np.testing.assert_array_equal(pairs1[0][0], pairs2[0][0])
  assert np.abs(np.asarray(pairs2[0][0]) - np.asarray(pairs2[2][0])).max() > 0
  prefix = np.array([1, 0, 0, 0, 0], np.int32)
  _, s1 = one.score_block(state, 1, prefix, val, calib)
  _, vec = two.score_block(state, 1, prefix, val, calib)
  _, loop = two.score_block_loop(state, 1, prefix, val, calib)
  np.testing.assert_allclose(vec, loop, rtol=1e-4, atol=1e-5)
  assert np.abs(vec - s1).max() > 1e-6


def test_width_groups_split_by_bucket():
  """8 widths in 2 buckets per layer: a 2-layer block's 64 paths fall in 4
  groups of 16, each narrowed to its bucket's widest width; other layers
  keep all their widths."""
  space = NATSSpace()
  table = space.block_paths(1)
  groups = width_groups.score_groups(space, 1, table, 2)
  assert [g[0] for g in groups] == [(8, 8, 4, 4, 8), (8, 8, 4, 8, 8),
                                    (8, 8, 8, 4, 8), (8, 8, 8, 8, 8)]
  for limits, rows in groups:
    assert len(rows) == 16
    lo = [l - 4 for l in limits[2:4]]
    assert ((table[rows] < limits[2:4]) & (table[rows] >= lo)).all()
  assert sorted(np.concatenate([r for _, r in groups])) == list(range(64))
  assert len(width_groups.score_groups(space, 1, table, 1)) == 1
  assert len(width_groups.score_groups(space, 1, table, 100)) == 64  # exact widths


def test_beam_and_architecture_scores_by_hand():
  space = make_space(tiny_config().space)  # 3 blocks: 2, 2 and 1 layers
  t0 = (space.block_paths(0), np.array([0.5, 0.1, 0.3, 0.2]))
  pool = search.beam([((), 0.0)], [t0], (1.0, 2.0, 1.0), top_n=2)
  assert [p[0].tolist() for p, _ in pool] == [[0, 1], [1, 1]]
  assert [acc for _, acc in pool] == pytest.approx([0.1, 0.2])
  t1 = (space.block_paths(1), np.array([1.0, 2.0, 3.0, 4.0]))
  t2 = (space.block_paths(2), np.array([0.0, 1.0]))
  tables = [{(): t0}, {(0, 1): t1}, {(0, 1, 0, 0): t2}]
  archs, scores = search.architecture_scores(space, tables, (1.0, 2.0, 1.0))
  assert len(archs) == 32
  got = {space.to_string(a): s for a, s in zip(archs, scores)}
  # 8:4:8:8:8 -> block0 (1,0)=0.3, block1 (1,1)=4.0, block2 (1,)=1.0
  assert got['8:4:8:8:8'] == pytest.approx(-(0.3 + 2 * 4.0 + 1.0))
