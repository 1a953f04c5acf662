"""Whole-architecture searchers (bossnax/searchers/evolution.py): NSGA-II's
sorting and crowding against hand examples, budgets and table coverage
respected, evaluations counted, determinism under a seed, and the
search_arch command on the NATS-Bench sample."""

import json

import numpy as np
import pytest

from bossnax import defaults, search_arch
from bossnax.searchers import evolution as ev
from bossnax.spaces import make_space
from conftest import SHARED

TABLE = SHARED / 'benchmarks' / 'nats_sss_cifar10_sample2048.csv'


@pytest.fixture(scope='module')
def nats():
  space = make_space(defaults.search_config().space)
  return space, ev.TableFitness.from_csv(space, TABLE,
                                         'cifar10_test_acc').table


def test_non_dominated_fronts_by_hand():
  # minimise both: (1,4) (2,2) (4,1) are the front; (3,3) is beaten by
  # (2,2); (4,4) by (3,3) too; the duplicate (2,2) sits on the front
  pts = np.array([[1, 4], [2, 2], [4, 1], [3, 3], [4, 4], [2, 2]])
  fronts = [sorted(f.tolist()) for f in ev.non_dominated_fronts(pts)]
  assert fronts == [[0, 1, 2, 5], [3], [4]]


def test_crowding_distance_by_hand():
  pts = np.array([[0., 10.], [1., 6.], [3., 2.], [4., 0.]])
  d = ev.crowding_distance(pts)
  assert np.isinf(d[0]) and np.isinf(d[3])
  # point 1: (3-0)/4 + (10-2)/10; point 2: (4-1)/4 + (6-0)/10
  np.testing.assert_allclose(d[1:3], [0.75 + 0.8, 0.75 + 0.6])


@pytest.mark.parametrize('strategy', sorted(ev.STRATEGIES))
def test_budget_table_and_evaluations_respected(nats, strategy):
  space, table = nats
  fitness = ev.TableFitness(table)
  budget = ev.Budget(flops=60.0, min_flops=20.0)
  ranking, used = ev.STRATEGIES[strategy](space, fitness, budget=budget,
                                          seed=3, max_evaluations=120)
  assert used == fitness.evaluations == len(ranking.rows) <= 120
  assert used > 50  # the band holds enough of the table
  for arch, score, flops, params in ranking.rows:
    assert arch in table and score == table[arch]
    assert 20e6 <= flops <= 60e6
  again, _ = ev.STRATEGIES[strategy](space, ev.TableFitness(table),
                                     budget=budget, seed=3,
                                     max_evaluations=120)
  assert again.rows == ranking.rows  # deterministic under the seed


def test_evolution_beats_its_random_start(nats):
  """Evolution's children improve on its random first population, on the
  real table (a table of 6% of the space: most children are unavailable
  and redrawn, so a generation may bring fewer than it wants)."""
  space, table = nats
  st = ev.EvolutionSettings(population=20, generations=6, parents=5,
                            mutations=10, crossovers=10)
  ranking, used = ev.evolution(space, ev.TableFitness(table), seed=0,
                               settings=st)
  assert 20 < used <= 20 + 6 * 20
  first, _ = ev.random_in_band(space, ev.TableFitness(table), seed=0,
                               max_evaluations=20)
  assert ranking.rows[0][1] > first.rows[0][1]


def test_pareto_front_has_no_dominated_row():
  rows = [('a', 1.0, 10, 0), ('b', 2.0, 20, 0), ('c', 1.5, 30, 0),
          ('d', 3.0, 30, 0)]
  assert [r[0] for r in ev.pareto_front(rows)] == ['a', 'b', 'd']


def test_search_arch_command(tmp_path, capsys):
  out = tmp_path / 's'
  assert search_arch.main([
      '--space=nats', f'--scores={TABLE}', '--score_column=cifar10_test_acc',
      '--strategy=nsga2', '--evaluations=60', '--flops_budget=50',
      f'--out={out}']) == 0
  s = json.loads((out / 'search.json').read_text())
  assert s['evaluations'] == 60 and s['best']['flops'] <= 50e6
  assert s['best']['score'] == max(r['score'] for r in s['evaluated'])
  assert s['pareto'] and (out / 'pareto.png').stat().st_size > 0
  assert s['best']['arch'] in capsys.readouterr().out
  assert search_arch.main(['--space=nats', f'--scores={TABLE}']) == 2
  assert 'pass --score_column=NAME' in capsys.readouterr().err


class _Interrupted(Exception):
  pass


@pytest.mark.parametrize('strategy', ['evolution', 'nsga2'])
def test_an_interrupted_search_resumes_exactly(nats, tmp_path, strategy):
  """A search killed in its third generation and started again from its
  saved population ends where the uninterrupted one does."""
  space, table = nats
  st = ev.EvolutionSettings(population=10, generations=4, parents=4,
                            mutations=5, crossovers=5)
  search = ev.STRATEGIES[strategy]
  whole, used = search(space, ev.TableFitness(table), seed=2, settings=st)

  class Dying(ev.TableFitness):  # dies after 30 lookups
    def __call__(self, texts):
      if self.evaluations + len(texts) > 30:
        raise _Interrupted
      return super().__call__(texts)

  path = str(tmp_path / 'state.json')
  with pytest.raises(_Interrupted):
    search(space, Dying(table), seed=2, settings=st, state_file=path)
  assert 0 < json.loads(open(path).read())['generation'] < st.generations
  resumed, used2 = search(space, ev.TableFitness(table), seed=2, settings=st,
                          state_file=path)
  assert resumed.rows == whole.rows and used2 == used
  for other in ({'seed': 3}, {'source': 'another table'}):
    with pytest.raises(ValueError, match='holds another search'):
      search(space, ev.TableFitness(table), settings=st, state_file=path,
             **{'seed': 2, **other})


@pytest.mark.xdist_group('tiny_run')
@pytest.mark.skipif(not TABLE.exists(), reason='needs ../shared')
def test_search_arch_on_a_finished_run(tiny_run, tmp_path, capsys):
  """--workdir: the run's block tables are the fitness (the best found is
  scored as the run's ranking scores it); blockwise_budget on NATS says
  its cost is not additive."""
  from bossnax.searchers import BlockwiseBeam
  c, workdir, _, meta = tiny_run
  (workdir / 'config.json').write_text(c.to_json_best_effort())  # as main
  space = make_space(c.space)
  exact = {r[0]: r[1] for r in BlockwiseBeam(space).ranking(meta).rows}
  out = tmp_path / 'w'
  assert search_arch.main([
      f'--workdir={workdir}', '--strategy=evolution', '--evaluations=12',
      '--population=6', '--generations=2', '--mutations=3',
      '--crossovers=3', f'--out={out}']) == 0
  s = json.loads((out / 'search.json').read_text())
  assert s['evaluations'] == 12 == len(s['evaluated'])
  for r in s['evaluated']:
    assert r['score'] == exact[r['arch']]
  assert (out / 'search_state.json').exists()
  assert search_arch.main([f'--workdir={workdir}',
                           '--strategy=blockwise_budget']) == 2
  assert 'not a sum of per-block costs' in capsys.readouterr().err
  assert search_arch.main([f'--workdir={tmp_path}']) == 2
  assert 'no config.json' in capsys.readouterr().err


def test_a_latency_budget_is_checked_with_the_latency_cost(nats):
  """Every architecture evaluated under a latency budget has its latency
  within it (a made-up latency here: MAdds / 1e6 ms); the measured one
  times a standalone network once per architecture."""
  from bossnax.searchers.latency import MeasuredLatency
  space, table = nats
  fake = lambda text: space.flops_params(space.from_string(text))[0] / 1e6
  ranking, used = ev.random_in_band(
      space, ev.TableFitness(table), budget=ev.Budget(latency=40.0), seed=0,
      max_evaluations=30, latency=fake)
  assert 5 < used <= 30 and all(r[2] <= 40e6 for r in ranking.rows)
  with pytest.raises(ValueError, match='needs a latency cost'):
    ev.random_in_band(space, ev.TableFitness(table),
                      budget=ev.Budget(latency=40.0))
  measured = MeasuredLatency(space, image_size=8, repeats=2)
  text = space.to_string(space.smallest())
  ms = measured(text)
  assert np.isfinite(ms) and ms > 0 and measured(text) == ms


def _fake_ms(space, text):
  """A made-up latency that is not MAdds (the last two layers cost most),
  so a front over it differs from the MAdds front."""
  c = [int(v) for v in text.split(':')]
  return 0.1 * c[0] + 0.2 * c[1] + c[3] + 2.0 * c[4]


def test_nsga2_trades_the_score_against_latency(nats, tmp_path, capsys,
                                                monkeypatch):
  """search.objective=latency: NSGA-II's second objective is the measured
  latency (made up here, through MeasuredLatency's cache), every evaluated
  architecture is measured, the written front is non-dominated in (score,
  ms) and differs from the MAdds front; the CLI draws it against ms."""
  from bossnax.searchers import latency as lat
  space, table = nats
  monkeypatch.setattr(lat.MeasuredLatency, '_measure',
                      lambda self, arch: _fake_ms(space, space.to_string(arch)))
  ms = lat.MeasuredLatency(space, 32)
  ranking, used = ev.nsga2(space, ev.TableFitness(table), seed=0,
                           max_evaluations=120, objectives=('latency',),
                           latency=ms)
  assert used == 120 and set(ms.measured) == {r[0] for r in ranking.rows}
  front = lat.front(ranking.rows, ms.measured)
  for r in ranking.rows:  # nothing beats a front point on both
    for f in front:
      assert not (r[1] > f[1] and ms.measured[r[0]] < ms.measured[f[0]])
  assert {r[0] for r in front} != {r[0] for r in ev.pareto_front(
      ranking.rows)}
  with pytest.raises(ValueError, match='latency objective needs'):
    ev.nsga2(space, ev.TableFitness(table), objectives=('latency',))
  out = tmp_path / 'lat'
  assert search_arch.main([
      '--space=nats', f'--scores={TABLE}', '--score_column=cifar10_test_acc',
      '--strategy=nsga2', '--objective=latency', '--evaluations=60',
      f'--out={out}']) == 0
  s = json.loads((out / 'search.json').read_text())
  assert all('latency_ms' in r for r in s['pareto'])
  lats = [r['latency_ms'] for r in s['pareto']]
  assert lats == sorted(lats) and (out / 'pareto.png').stat().st_size > 0
  assert search_arch.main(['--space=nats', f'--scores={TABLE}',
                           '--score_column=cifar10_test_acc',
                           '--objective=latency']) == 2
  assert '--strategy=nsga2' in capsys.readouterr().err


def test_main_run_plan_measures_latency(nats, monkeypatch):
  """The main run's search.latency_budget / search.objective=latency:
  refused (one line, before training) unless the strategy is a
  whole-architecture one; search_whole keeps every row inside the budget
  and returns the ranking.json `latency` entry."""
  from bossnax.searchers import latency as lat
  from bossnax.searchers.strategies import Plan, search_whole
  space, table = nats
  monkeypatch.setattr(lat.MeasuredLatency, '_measure',
                      lambda self, arch: _fake_ms(space, space.to_string(arch)))
  s = defaults.search_config().search
  s.latency_budget = 60.0
  with pytest.raises(ValueError, match='strategy=auto.*evolution, nsga2'):
    Plan.from_config(s)
  s.strategy, s.evaluations = 'evolution', 80
  plan = Plan.from_config(s, image_size=32)
  assert plan.measures_latency and plan.image_size == 32
  rows, info = search_whole(plan, space, ev.TableFitness(table))
  assert 20 < len(rows) <= 80 and info['budget_ms'] == 60.0
  assert all(info['measured_ms'][r[0]] <= 60.0 for r in rows)
  assert info['image_size'] == 32 and info['batch'] == 1
  s.latency_budget, s.strategy, s.objective = 0.0, 'nsga2', 'latency'
  rows, info = search_whole(Plan.from_config(s), space,
                            ev.TableFitness(table))
  assert info['pareto'] and 'budget_ms' in info
  s.objective = 'speed'
  with pytest.raises(ValueError, match='search.objective'):
    Plan.from_config(s)


def test_latency_settings_are_checked_before_training(nats, tmp_path,
                                                      capsys):
  """Review findings, each one line before any work: an objective other
  than MAdds needs nsga2 (main run and search_arch, blockwise_budget
  included), a negative budget or an empty batch is refused; a space's own
  input side is the default; a rescored one-shot run's latency front
  follows the new scores."""
  from bossnax.searchers import latency as lat
  from bossnax.searchers.strategies import Plan
  from bossnax.searchers.whole import WholeArchs
  s = defaults.search_config().search
  for key, value, msg in (('objective', 'latency', 'strategy=nsga2'),
                          ('latency_budget', -1.0, 'must be >= 0'),
                          ('latency_batch', 0, 'latency_batch >= 1')):
    t = s.copy_and_resolve_references()
    t.strategy, t[key] = 'evolution', value
    with pytest.raises(ValueError, match=msg):
      Plan.from_config(t)
  for argv in (['--strategy=blockwise_budget', '--objective=params'],
               ['--latency_batch=0']):
    assert search_arch.main(['--space=nats', f'--scores={TABLE}',
                             '--score_column=cifar10_test_acc',
                             *argv]) == 2
    assert capsys.readouterr().err.count('\n') == 1
  mb = make_space(defaults.mbconv_base().space)
  assert lat.default_image_size(mb) == mb.resolution
  space, _ = nats
  archs = ['8:8:8:8:8', '64:64:64:64:64', '32:32:32:32:32']
  ms = {'8:8:8:8:8': 1.0, '64:64:64:64:64': 9.0, '32:32:32:32:32': 4.0}
  state = {'archs': archs, 'losses': [3.0, 1.0, 2.0],
           'latency': {'measured_ms': ms, 'pareto': []}}
  searcher = WholeArchs(space)
  new, _ = searcher.rescore(state, None, lambda flat: np.array([1.0, 3.0,
                                                               2.0]))
  front = [p['arch'] for p in new['latency']['pareto']]
  assert front == ['8:8:8:8:8']  # now the fastest is also the best
