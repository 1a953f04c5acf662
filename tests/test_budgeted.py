"""Budgeted exact search over block tables (bossnax/searchers/budgeted.py)
and search.strategy in the main run (strategies.py): the spaces' block cost
chains add up to their counters, the dynamic programme equals brute force
on small additive spaces, the exact Pareto front equals the enumerated one,
NATS says its cost is not additive, and a finished run is ranked by the
configured strategy."""

import numpy as np
import pytest

from bossnax.searchers import budgeted, evolution as ev
from bossnax.searchers.blockwise import BlockwiseBeam, architecture_scores
from bossnax.searchers.strategies import Plan
from bossnax.spaces.hytra import HyTraSpace
from bossnax.spaces.mbconv import MBConvSpace
from conftest import SHARED

SPACES = {
    'mbconv': lambda: MBConvSpace(),
    'mbconv-dna': lambda: MBConvSpace('dna'),
    'mbconv-spos': lambda: MBConvSpace('spos'),  # identity choices
    'mbconv-tiny': lambda: MBConvSpace(cifar_stem=True,
                                       stage_layers=(1, 1, 1, 1, 1),
                                       stage_widths=(8, 8, 16, 16, 24)),
    'hytra': lambda: HyTraSpace(),
    'hytra-cifar': lambda: HyTraSpace(stem='cifar', base_width=8,
                                      last_stride=1),
    'hytra-block-ends': lambda: HyTraSpace(block_ends=(1, 2, 2, 3)),
    'hytra-unrestricted': lambda: HyTraSpace(depth=2, restricted=False),
}


@pytest.mark.parametrize('name', sorted(SPACES))
def test_block_cost_chain_adds_up_to_the_counter(name):
  """Vectorised costs and the chain of block costs (each block given the
  state the previous one left) equal flops_params, architecture by
  architecture."""
  space = SPACES[name]()
  rng = np.random.default_rng(0)
  archs = [space.sample(rng) for _ in range(40)]
  ref = np.asarray([space.flops_params(a) for a in archs])
  flat = np.stack([space.flatten(a) for a in archs])
  np.testing.assert_array_equal(space.costs(flat), ref)
  for arch, want in zip(archs, ref):
    state, total = None, np.zeros(2, np.int64)
    for k in range(space.num_blocks):
      cost, out = space.block_costs(k, np.asarray(arch[k])[None], state)
      total, state = total + cost[0], out[0]
    np.testing.assert_array_equal(total + space.end_cost(state), want)


def one_table_per_block(space, seed=0):
  """Random losses for every path of each block behind the best prefix so
  far (a top_n = 1 search)."""
  rng = np.random.default_rng(seed)
  tables, prefix = [], ()
  for k in range(space.num_blocks):
    paths = space.block_paths(k, prefix)
    losses = rng.random(len(paths))
    tables.append({tuple(int(v) for p in prefix for v in p):
                   (paths, losses)})
    prefix += (paths[np.argmin(losses)],)
  return tables


def strings(space, rows):
  return [(space.to_string(r[0]), round(r[1], 9)) for r in rows]


@pytest.mark.parametrize('make', [
    lambda: MBConvSpace(stage_layers=(1, 1, 2, 1, 1)),  # 4,096
    lambda: HyTraSpace(depth=2),  # 4,640, scales constrained
    lambda: HyTraSpace(depth=2, restricted=False)])  # 4,895
def test_dp_equals_brute_force_and_the_exact_front(make):
  space = make()
  tables = one_table_per_block(space)
  lam = tuple(np.linspace(1.0, 2.0, space.num_blocks))
  archs, scores = architecture_scores(space, tables, lam)
  costs = space.costs(np.stack([space.flatten(a) for a in archs]))
  for j, cost in enumerate(budgeted.COSTS):
    for q in (0, 20, 60):
      budget = np.percentile(costs[:, j], q) / 1e6 if q else 0.0
      got = budgeted.search(space, tables, lam, budget=budget, cost=cost,
                            k=7)
      assert len(got) == 7
      assert strings(space, got) == strings(space, budgeted.brute_force(
          space, tables, lam, budget=budget, cost=cost, k=7))
  rows = [(space.to_string(a), s, *c) for a, s, c in zip(archs, scores,
                                                        costs)]
  front = budgeted.pareto(space, tables, lam)
  assert strings(space, front) == [(r[0], round(r[1], 9))
                                   for r in ev.pareto_front(rows)]


def test_k_frontier_by_hand():
  # (cost, loss): 0 (1,5) 1 (2,3) 2 (3,4) 3 (4,1) 4 (5,2) 5 (6,6);
  # layers: {0, 1, 3}, then {2, 4}, then {5}
  cost, loss = [1, 2, 3, 4, 5, 6], [5, 3, 4, 1, 2, 6]
  assert budgeted.k_frontier(cost, loss, 1).tolist() == [0, 1, 3]
  assert budgeted.k_frontier(cost, loss, 2).tolist() == [0, 1, 2, 3, 4]
  assert budgeted.k_frontier(cost, loss, 3).tolist() == [0, 1, 2, 3, 4, 5]
  # a NaN loss beats nothing and hides nothing
  assert budgeted.k_frontier([1, 2, 3, 4], [5, np.nan, 1, .5], 1).tolist() \
      == [0, 2, 3]


def test_full_mbconv_space_under_a_budget():
  """6.9e10 architectures: the best 10 under 400 M MAdds and the front, by
  the searcher the main run uses; no random architecture under the budget
  beats the 10th."""
  space = MBConvSpace()
  tables = one_table_per_block(space)
  searcher = BlockwiseBeam(space, plan=Plan('blockwise_budget',
                                            budgets=((400.0, 0.0),)))
  state = searcher.initial_state()
  for k in range(space.num_blocks):
    (key, (paths, losses)), = tables[k].items()
    state, _ = searcher.search_block(state, k, lambda _: (paths, losses))
  ranking = searcher.ranking(state)
  s = ranking.summary(flops_budget_m=400.0)
  best = s['budgets'][0]['best']
  scorer = searcher.block_scorer(state)
  assert best['flops'] <= 400e6
  assert scorer.score(space.from_string(best['arch'])) == best['score']
  tenth = [r for r in ranking.rows if r[2] <= 400e6][9][1]
  rng = np.random.default_rng(1)
  for _ in range(300):
    a = space.sample(rng)
    if space.flops_params(a)[0] <= 400e6:
      assert scorer.score(a) <= tenth
  front = s['pareto']
  assert len(front) > 10 and front == sorted(front, key=lambda r: r['flops'])
  assert all(a['score'] < b['score'] for a, b in zip(front, front[1:]))
  assert s['best'] == ranking.best


def test_nats_cost_is_not_additive():
  from bossnax import defaults
  from bossnax.spaces import make_space
  space = make_space(defaults.search_config().space)
  tables = one_table_per_block(space)
  with pytest.raises(ValueError, match='additive.*evolution'):
    budgeted.search(space, tables, (1.0,) * space.num_blocks, budget=50)


def test_plan_from_config_checks_the_strategy():
  from bossnax import defaults
  s = defaults.search_config().search
  s.strategy, s.flops_budgets = 'nsga2', (30.0, 60.0)
  plan = Plan.from_config(s)
  assert plan.whole and plan.budgets == ((0.0, 0.0), (30.0, 0.0),
                                         (60.0, 0.0))
  assert plan.settings.population == 50 and plan.settings.mutations == 25
  s.strategy, s.flops_budget, s.params_budget = 'blockwise_budget', 300, 5
  with pytest.raises(ValueError, match='not both'):  # before any training
    Plan.from_config(s)
  s.strategy = 'genetic'
  with pytest.raises(ValueError, match='use one of auto, exhaustive'):
    Plan.from_config(s)


def test_pareto_front_fast_path_equals_dominance():
  rng = np.random.default_rng(0)
  rows = [(str(i), float(s), int(f), 0) for i, (s, f) in enumerate(
      zip(rng.permutation(300), rng.permutation(300)))]
  obj = np.asarray([[-r[1], r[2]] for r in rows])
  want = sorted(int(i) for i in ev.non_dominated_fronts(obj)[0])
  assert sorted(int(r[0]) for r in ev.pareto_front(rows)) == want


@pytest.mark.xdist_group('tiny_run')
@pytest.mark.skipif(not SHARED.exists(), reason='needs ../shared')
def test_a_finished_run_is_ranked_by_the_configured_strategy(tiny_run):
  """The tiny NATS run's block tables: evolution's rows are scored like the
  exhaustive ranking scores them, within every budget; blockwise_budget
  says NATS's cost is not additive; exhaustive refuses too many."""
  c, _, _, meta = tiny_run
  from bossnax.spaces import make_space
  space = make_space(c.space)
  full = BlockwiseBeam(space).ranking(meta)
  exact = {r[0]: r for r in full.rows}
  settings = ev.EvolutionSettings(population=8, generations=3, parents=4,
                                  mutations=4, crossovers=4)
  median = float(np.median([r[2] for r in full.rows])) / 1e6
  plan = Plan('evolution', evaluations=16,
              budgets=((0.0, 0.0), (median, 0.0)), settings=settings)
  ranking = BlockwiseBeam(space, plan=plan).ranking(meta)
  assert 16 <= len(ranking.rows) <= min(32, space.count())
  for r in ranking.rows:
    assert r == exact[r[0]]
  s = ranking.summary(flops_budgets=(median,))
  best = s['budgets'][0]['best']
  assert best['flops'] <= median * 1e6
  assert best == max((dict(zip(('arch', 'score', 'flops', 'params'), r))
                      for r in ranking.rows if r[2] <= median * 1e6),
                     key=lambda r: r['score'])
  assert s['pareto'][0]['flops'] == min(r[2] for r in ranking.rows)
  fell_back = BlockwiseBeam(space, plan=Plan('blockwise_budget')).ranking(
      meta)  # NATS's cost is not additive: it says so, ranks exhaustively
  assert 'not a sum of per-block costs' in fell_back.note
  assert fell_back.rows == full.rows
  with pytest.raises(ValueError, match='too many'):
    BlockwiseBeam(space, max_archs=space.count() - 1,
                  plan=Plan('exhaustive')).ranking(meta)


def test_oneshot_searcher_uses_the_supernet_as_fitness():
  """One-shot methods with search.strategy=evolution: every architecture
  evaluated once, in batches padded to the chunk, ranked by its loss;
  blockwise_budget is refused (no block tables)."""
  from bossnax.searchers import WholeArchs
  space = SPACES['mbconv-tiny']()
  batches = []

  def score_archs(flat):  # a made-up loss of the whole network
    batches.append(len(flat))
    return np.asarray(flat, np.float64).sum(1) + 0.01 * flat[:, 0]

  settings = ev.EvolutionSettings(population=10, generations=3, parents=4,
                                  mutations=5, crossovers=5)
  searcher = WholeArchs(space, chunk=8, plan=Plan(
      'evolution', evaluations=30, settings=settings))
  state, _ = searcher.search_block(searcher.initial_state(), 0, None,
                                   score_archs=score_archs)
  assert all(n % 8 == 0 for n in batches) and sum(batches) < 30 + 8 * 4
  assert len(state['archs']) == len(set(state['archs'])) == 30
  for text, loss in zip(state['archs'], state['losses']):
    flat = space.flatten(space.from_string(text))
    assert loss == pytest.approx(flat.sum() + 0.01 * flat[0])
  ranking = searcher.ranking(state)
  assert ranking.rows[0][1] == -min(state['losses'])
  assert ranking.best == ranking.rows[0][0] and 'evolution' in ranking.note
  with pytest.raises(ValueError, match='needs block tables'):
    WholeArchs(space, plan=Plan('blockwise_budget'))


def test_exhaustive_with_an_archs_file_still_ranks_everything(tmp_path):
  space = SPACES['mbconv-tiny']()  # 1,024 architectures
  tables = one_table_per_block(space)
  listed = tmp_path / 'archs.csv'
  listed.write_text('arch\n0|0|0|0|0\n')
  searcher = BlockwiseBeam(space, archs_file=str(listed),
                           plan=Plan('exhaustive'))
  state = searcher.initial_state()
  for k in range(space.num_blocks):
    (_, (paths, losses)), = tables[k].items()
    state, _ = searcher.search_block(state, k, lambda _: (paths, losses))
  assert len(searcher.ranking(state).rows) == 1024


def test_a_non_finite_loss_is_left_out_not_everything_after_it():
  space = MBConvSpace(stage_layers=(1, 1, 2, 1, 1))
  tables = one_table_per_block(space)
  (key, (paths, losses)), = tables[0].items()
  cheapest = int(np.argmin(space.block_costs(0, paths)[0][:, 0]))
  losses = losses.copy()
  losses[cheapest] = np.nan
  tables[0] = {key: (paths, losses)}
  lam = (1.0,) * space.num_blocks
  got = budgeted.search(space, tables, lam, k=5)
  assert len(got) == 5 and budgeted.pareto(space, tables, lam)
  assert all(tuple(r[0][0]) != tuple(paths[cheapest]) for r in got)
