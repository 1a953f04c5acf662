"""Scoring and searching: the vectorised evaluator equals a per-path loop
(chunks, width groups, recalibration, the padded last batch, several view
pairs), and block tables combine into architecture scores as the hand sum
says. Scores are taken on the trained supernet of the session's tiny run."""

import jax
import numpy as np
import pytest

from bossnax import parallel, width_groups
from bossnax.engine.evaluator import Evaluator, compiled_scorer
from bossnax.searchers import blockwise
from bossnax.spaces import make_space
from bossnax.spaces.nats import NATSSpace
from conftest import tiny_config, trainer

PREFIX = np.array([1, 1, 0, 0, 0], np.int32)  # block 1 after block 0's 8:8


@pytest.fixture(scope='module')
def setup(tiny_run):
  c, _, state, _ = tiny_run
  tr = trainer(c)
  state = jax.device_put(state, parallel.replicated(tr.mesh))
  rng = np.random.default_rng(0)
  val = rng.integers(0, 255, (32, 32, 32, 3), np.uint8)
  calib = rng.integers(0, 255, (16, 32, 32, 3), np.uint8)
  return c, tr, state, val, calib


def _evaluator(c, tr):
  return Evaluator(c, tr.space, tr.model, tr.objective, tr.mesh)


@pytest.mark.parametrize('recalibrate,centre,chunk,groups,predictor_bn', [
    (True, 'normalized', 16, 1, 'recalibrate'), (False, 'raw', 3, 1, 'reset'),
    (True, 'normalized', 16, 2, 'reset'), (False, 'raw', 1, 2, 'recalibrate')])
@pytest.mark.slow
@pytest.mark.xdist_group('tiny_run')
def test_vectorised_scores_equal_per_path_loop(setup, recalibrate, centre,
                                               chunk, groups, predictor_bn):
  """Also with the paths grouped by width into narrowed supernets (groups=2:
  each of the 4 paths of block 1 in its own narrowed net), and with the
  predictor's BN reset (the official metric)."""
  c, tr, state, val, calib = setup
  c = c.copy_and_resolve_references()
  c.search.recalibrate_bn = recalibrate
  c.search.centre = centre
  c.search.path_chunk = chunk
  c.search.width_groups = groups
  c.search.predictor_bn = predictor_bn
  tr = trainer(c)
  ev = _evaluator(c, tr)
  table, vec = ev.score_block(state, 1, PREFIX, val, calib)
  table2, loop = ev.score_block_loop(state, 1, PREFIX, val, calib)
  # an evaluator with equal settings shares the compiled programs
  spec = ev.spec(1, table)
  assert _evaluator(c, trainer(c)).spec(1, table) == spec
  assert compiled_scorer(spec, tr.mesh) is compiled_scorer(
      _evaluator(c, trainer(c)).spec(1, table), tr.mesh)
  np.testing.assert_array_equal(table, table2)
  assert table.shape == (4, 2) and np.all(np.isfinite(vec))
  np.testing.assert_allclose(vec, loop, rtol=1e-4, atol=1e-5)
  assert np.ptp(vec) > 0  # paths are told apart
  if predictor_bn == 'reset':  # the option changes the scores
    c.search.predictor_bn = 'recalibrate'
    tr = trainer(c)
    other = _evaluator(c, tr).score_block(state, 1, PREFIX, val, calib)[1]
    assert np.abs(other - vec).max() > 1e-4


@pytest.mark.slow
@pytest.mark.xdist_group('tiny_run')
def test_ragged_last_batch_counts_every_image_once(setup):
  """20 images at batch 16: the padded tail weighs nothing, so the scores
  equal those of 32 images of which the last 12 have weight 0 (same views
  for the first 20), and the per-path loop agrees."""
  c, tr, state, val, calib = setup
  ev = _evaluator(c, tr)
  _, ragged = ev.score_block(state, 1, PREFIX, val[:20], calib)
  w = np.r_[np.ones(20), np.zeros(12)].astype(np.float32)
  _, weighted = ev.score_block(state, 1, PREFIX, val, calib, w)
  _, full = ev.score_block(state, 1, PREFIX, val, calib)
  _, loop = ev.score_block_loop(state, 1, PREFIX, val[:20], calib)
  np.testing.assert_allclose(ragged, weighted, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(ragged, loop, rtol=1e-4, atol=1e-5)
  assert np.abs(ragged - full).max() > 1e-6  # the 12 extra images do count


@pytest.mark.slow
@pytest.mark.xdist_group('tiny_run')
def test_more_view_pairs_average_over_pairs(setup):
  """search.view_pairs=2: the first pair of each image is the one-pair
  view, the second a new one; the vectorised pass still equals the loop and
  the scores move."""
  c, tr, state, val, calib = setup
  one = _evaluator(c, tr)
  c = c.copy_and_resolve_references()
  c.search.view_pairs = 0
  with pytest.raises(ValueError, match='search.view_pairs=0: use 1 or more'):
    _evaluator(c, tr)
  c.search.view_pairs = 2
  two = _evaluator(c, tr)
  pairs1 = list(one.view_pairs(val, 16))
  pairs2 = list(two.view_pairs(val, 16))
  assert len(pairs2) == 2 * len(pairs1)
  np.testing.assert_array_equal(pairs1[0][0], pairs2[0][0])
  assert np.abs(np.asarray(pairs2[0][0]) - np.asarray(pairs2[2][0])).max() > 0
  _, s1 = one.score_block(state, 1, PREFIX, val, calib)
  _, vec = two.score_block(state, 1, PREFIX, val, calib)
  _, loop = two.score_block_loop(state, 1, PREFIX, val, calib)
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
  pool = blockwise.beam([((), 0.0)], [t0], (1.0, 2.0, 1.0), top_n=2)
  assert [p[0].tolist() for p, _ in pool] == [[0, 1], [1, 1]]
  assert [acc for _, acc in pool] == pytest.approx([0.1, 0.2])
  t1 = (space.block_paths(1), np.array([1.0, 2.0, 3.0, 4.0]))
  t2 = (space.block_paths(2), np.array([0.0, 1.0]))
  tables = [{(): t0}, {(0, 1): t1}, {(0, 1, 0, 0): t2}]
  archs, scores = blockwise.architecture_scores(space, tables,
                                                (1.0, 2.0, 1.0))
  assert len(archs) == 32
  got = {space.to_string(a): s for a, s in zip(archs, scores)}
  # 8:4:8:8:8 -> block0 (1,0)=0.3, block1 (1,1)=4.0, block2 (1,)=1.0
  assert got['8:4:8:8:8'] == pytest.approx(-(0.3 + 2 * 4.0 + 1.0))


def test_ranking_budget_and_files(tmp_path):
  """The Ranking a searcher returns: rows best first, the best within a
  budget, scores.csv and ranking.json as written."""
  import json
  from bossnax.searchers import Ranking
  space = make_space(tiny_config().space)
  archs = [space.parse(a) for a in ('8:8:8:8:8', '4:4:4:4:4', '8:4:8:4:8')]
  ranking = Ranking.from_scores(space, archs, [-3.0, -1.0, -2.0], '8:8:8:8:8',
                                'higher is better')
  assert [r[0] for r in ranking.rows] == ['4:4:4:4:4', '8:4:8:4:8',
                                          '8:8:8:8:8']
  flops = space.flops_params(space.parse('8:4:8:4:8'))[0]
  assert ranking.within(flops_budget_m=flops / 1e6)['arch'] == '4:4:4:4:4'
  c = tiny_config()
  c.search.flops_budget = 0.5 * (flops + space.flops_params(archs[1])[0]) / 1e6
  summary = ranking.write(str(tmp_path), c.search)
  assert summary['budgets'][0]['best']['arch'] == '4:4:4:4:4'
  rows = (tmp_path / 'scores.csv').read_text().splitlines()
  assert rows[0] == 'arch,score,flops,params' and rows[1].startswith('4:4:4:4:4,-1.0')
  written = json.loads((tmp_path / 'ranking.json').read_text())
  assert written['best'] == '8:8:8:8:8'
  # the per-layer sanity report: the best-scored arch is the narrowest
  assert written['per_layer_width_spearman']['c0'] < 0
