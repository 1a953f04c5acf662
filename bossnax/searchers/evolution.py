"""Whole-architecture search for spaces too large to enumerate: evolution
(SPOS / AutoFormer), NSGA-II and random search in a cost band (DATA), each
a function of (space, fitness, constraints, seed) that returns every
architecture it evaluated as a `Ranking`, with the evaluations it used.

A fitness maps a list of architectures to scores (higher is better) and
counts every architecture it is asked for; `available(text)` says which it
can score (a score table covers part of the space: the others are treated
like invalid children and redrawn, without spending an evaluation).
Costs are the space's own counter (`flops_params`, describe's MAdds and
params), cached per architecture.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os

import numpy as np

from bossnax.searchers.ranking import COST_COLUMNS, Ranking, cost_front


# -- fitness and constraints ------------------------------------------------------
class TableFitness:
  """Scores looked up in a table {arch string: score} (e.g. a CSV with an
  `arch` column and a score column); every lookup is one evaluation."""

  def __init__(self, table: dict):
    self.table, self.evaluations = dict(table), 0

  @classmethod
  def from_csv(cls, space, path, column='score'):
    with open(path) as f:
      reader = csv.DictReader(f)
      if 'arch' not in (reader.fieldnames or ()) or column not in (
          reader.fieldnames or ()):
        raise ValueError(f'{path}: needs the columns arch and {column} (has '
                         f'{", ".join(reader.fieldnames or ())}): pass '
                         '--score_column=NAME for another score column')
      table = {}
      for row in reader:
        try:  # one canonical string per architecture
          text = space.to_string(space.from_string(row['arch']))
        except ValueError as e:
          raise ValueError(f'{path}: {e}') from None
        table[text] = float(row[column])
    if not table:
      raise ValueError(f'{path}: no rows')
    return cls(table)

  def available(self, text: str) -> bool:
    return text in self.table

  def __call__(self, texts):
    self.evaluations += len(texts)
    return np.asarray([self.table[t] for t in texts], np.float64)


@dataclasses.dataclass(frozen=True)
class Budget:
  """MAdds and params limits in millions (0 = none); `min_flops` is the
  lower edge of a band (DATA's random search, AutoFormer's min params);
  `latency` a limit in milliseconds, checked last (it is measured)."""
  flops: float = 0.0
  params: float = 0.0
  min_flops: float = 0.0
  min_params: float = 0.0
  latency: float = 0.0  # ms, by the search's latency cost (latency.py)

  def admits(self, flops, params) -> bool:
    # in counts, as Ranking.within and the budgeted search compare
    return ((not self.flops or flops <= self.flops * 1e6) and
            (not self.params or params <= self.params * 1e6) and
            flops >= self.min_flops * 1e6 and params >= self.min_params * 1e6)


@dataclasses.dataclass(frozen=True)
class EvolutionSettings:
  """SPOS's evolution (Guo et al. 2020; AutoFormer uses the same loop):
  a population of 50, 20 generations, the top 10 so far as parents, 25
  children by mutation and 25 by uniform crossover per generation.
  `mutation_prob` is the per-gene probability (SPOS 0.1); spaces with
  structure genes (the ViT's depth and embedding width) mutate those with
  `structure_prob` (AutoFormer's code: 0.2 per layer, 0.4 structure; the
  `paper` convention of configs/autoformer_*.py swaps them)."""
  population: int = 50
  generations: int = 20
  parents: int = 10
  mutations: int = 25
  crossovers: int = 25
  mutation_prob: float = 0.1
  structure_prob: float = 0.4
  tries: int = 50  # draws per wanted child before a generation gives up


class _Search:
  """What every strategy shares: the space, fitness, budget, generator,
  each architecture's cost and score (evaluated once)."""

  def __init__(self, space, fitness, budget, seed, tries=50, latency=None):
    self.space, self.fitness, self.tries = space, fitness, tries
    self.budget = budget or Budget()
    self.latency = latency  # text -> ms (latency.MeasuredLatency)
    if self.budget.latency and latency is None:
      raise ValueError('a latency budget needs a latency cost: pass '
                       'latency=MeasuredLatency(...) (search_arch does)')
    self.rng = np.random.default_rng(seed)
    self.scores: dict[str, float] = {}  # every architecture evaluated
    self.evaluations = 0
    self._costs: dict[str, tuple[int, int]] = {}

  def cost(self, text):
    """(MAdds, params), counted once per architecture (a cache on the
    search, not on the class: it goes when the search does)."""
    if text not in self._costs:
      self._costs[text] = self.space.flops_params(
          self.space.from_string(text))
    return self._costs[text]

  def admissible(self, text) -> bool:
    return (text not in self.scores and
            getattr(self.fitness, 'available', lambda _: True)(text) and
            self.budget.admits(*self.cost(text)) and
            (not self.budget.latency or
             self.latency(text) <= self.budget.latency))

  def draw(self, make, n, max_evals):
    """Up to n new admissible architectures from make() (an Arch, or None
    for a failed try), fewer when `tries` per child find none or the
    evaluations run out."""
    out = []
    n = min(n, max_evals - self.evaluations)
    for _ in range(max(n, 0) * self.tries):
      if len(out) == n:
        break
      arch = make()
      if arch is None:
        continue
      text = self.space.to_string(arch)
      if self.admissible(text) and text not in out:
        out.append(text)
    return out

  def evaluate(self, texts):
    if texts:
      for t, s in zip(texts, self.fitness(texts)):
        self.scores[t] = float(s)
      self.evaluations += len(texts)
    return [self.scores[t] for t in texts]

  # -- resumable: everything a generation needs, as JSON ------------------
  def save(self, path, key, generation, pop=None):
    """Write the search after `generation` generations to `path` (atomic:
    an interrupted write leaves the previous one)."""
    if not path:
      return
    state = {'key': key, 'generation': generation,
             'evaluations': self.evaluations, 'scores': self.scores,
             'rng': self.rng.bit_generator.state, 'pop': pop,
             # measured latencies, so a resumed search sees the same ones
             'latency': getattr(self.latency, 'measured', None)}
    tmp = f'{path}.tmp'
    with open(tmp, 'w') as f:
      json.dump(state, f)
    os.replace(tmp, path)

  def load(self, path, key):
    """The saved generation count and population (None: nothing saved)."""
    if not path or not os.path.exists(path):
      return None
    try:
      with open(path) as f:
        state = json.load(f)
      saved_key = state['key']
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise ValueError(f'{path} is not a saved search ({e}): delete it to '
                       'start again') from None
    if saved_key != key:
      raise ValueError(f'{path} holds another search ({saved_key}, this is '
                       f'{key}): delete it or write to another --out')
    self.scores = {t: float(v) for t, v in state['scores'].items()}
    self.evaluations = int(state['evaluations'])
    self.rng.bit_generator.state = state['rng']
    if state.get('latency') and hasattr(self.latency, 'measured'):
      self.latency.measured.update(state['latency'])
    return int(state['generation']), state['pop']

  def ranking(self, note=''):
    rows = sorted(((t, s, *self.cost(t)) for t, s in self.scores.items()),
                  key=lambda r: -r[1])
    best = rows[0][0] if rows else ''
    return Ranking(self.space, rows, best, note=note)


def _mutate(space, parent, rng, settings):
  return space.mutate(parent(), rng, settings.mutation_prob,
                      structure_prob=settings.structure_prob)


def _cross(space, parent, rng, tries=50):
  """A child of two parents the space can cross (AutoFormer: the same
  depth; the second redrawn up to `tries` times), or None."""
  a = parent()
  for _ in range(tries):
    b = parent()
    if space.can_cross(a, b):
      return space.crossover(a, b, rng)
  return None


def _initial(search, initial, n, max_evals):
  texts = [t for t in (search.space.to_string(a) if not isinstance(a, str)
                       else a for a in (initial or ()))
           if search.admissible(t)][:n]
  return texts + search.draw(lambda: search.space.sample(search.rng),
                             n - len(texts), max_evals)


def _key(name, space, budget, seed, cap, settings, source):
  """What a saved search must match to be resumed (`source`: what the
  caller says its fitness and latency are, e.g. the score file)."""
  return {'strategy': name, 'space': space.name, 'budget': vars(budget),
          'seed': seed, 'max_evaluations': cap, 'settings': vars(settings),
          'source': source}


def evolution(space, fitness, *, budget=None, seed=0, max_evaluations=None,
              settings=EvolutionSettings(), initial=(), state_file='',
              latency=None, source=None):
  """SPOS's evolutionary search; returns (Ranking of every architecture
  evaluated, evaluations). Stops after `settings.generations` or at
  `max_evaluations`. `state_file`: saved after every generation and
  resumed from when it exists (the same search continues exactly; `source`,
  JSON, names the fitness so another one's state is refused).
  `latency`: text -> ms, for a latency budget."""
  st = settings
  s = _Search(space, fitness, budget, seed, st.tries, latency)
  cap = max_evaluations or st.population * (st.generations + 1)
  key = _key('evolution', space, s.budget, seed, cap, st, source)
  saved = s.load(state_file, key)
  start = saved[0] if saved else 0
  if not saved:
    s.evaluate(_initial(s, initial, st.population, cap))
    s.save(state_file, key, 0)
  for generation in range(start, st.generations):
    if s.evaluations >= cap or not s.scores:
      break
    top = sorted(s.scores, key=s.scores.get, reverse=True)[:st.parents]
    parent = lambda: space.from_string(top[s.rng.integers(len(top))])
    kids = s.draw(lambda: _mutate(space, parent, s.rng, st), st.mutations,
                  cap)
    s.evaluate(kids)
    kids = s.draw(lambda: _cross(space, parent, s.rng), st.crossovers, cap)
    s.evaluate(kids)
    s.save(state_file, key, generation + 1)
  return s.ranking('evolution'), s.evaluations


def random_in_band(space, fitness, *, budget=None, seed=0,
                   max_evaluations=1000, latency=None):
  """N random admissible architectures (DATA: inside a FLOPs band), the best
  by fitness; returns (Ranking, evaluations)."""
  s = _Search(space, fitness, budget, seed, latency=latency)
  s.evaluate(s.draw(lambda: space.sample(s.rng), max_evaluations,
                    max_evaluations))
  return s.ranking('random'), s.evaluations


# -- NSGA-II (Deb et al. 2002) ----------------------------------------------------
def non_dominated_fronts(objectives: np.ndarray) -> list[np.ndarray]:
  """Indices of each front, best first, of points [N, M] to minimise."""
  obj = np.asarray(objectives, np.float64)
  le = (obj[:, None, :] <= obj[None, :, :]).all(-1)
  lt = (obj[:, None, :] < obj[None, :, :]).any(-1)
  dominates = le & lt  # [i, j]: i dominates j
  count = dominates.sum(0)  # how many dominate j
  fronts, current = [], np.flatnonzero(count == 0)
  while current.size:
    fronts.append(current)
    count = count - dominates[current].sum(0)
    count[current] = -1
    current = np.flatnonzero(count == 0)
  return fronts


def crowding_distance(objectives: np.ndarray) -> np.ndarray:
  """Per point of one front [N, M]: the sum over objectives of the gap
  between its neighbours, normalised by the objective's range; the ends of
  every objective get infinity."""
  obj = np.asarray(objectives, np.float64)
  n, m = obj.shape
  dist = np.zeros(n)
  for j in range(m):
    order = np.argsort(obj[:, j], kind='stable')
    span = obj[order[-1], j] - obj[order[0], j]
    dist[order[0]] = dist[order[-1]] = np.inf
    if n > 2 and span > 0:
      dist[order[1:-1]] += (obj[order[2:], j] - obj[order[:-2], j]) / span
  return dist


def pareto_front(rows, objectives=('flops',)):
  """The rows (arch, score, flops, params) no other row beats on score and
  every cost in `objectives`, cheapest first."""
  if not rows:
    return []
  if len(objectives) == 1:  # one cost: a sort, not O(N^2) dominance
    return cost_front(rows, objectives[0])
  obj = np.asarray([[-r[1]] + [r[COST_COLUMNS[o]] for o in objectives]
                    for r in rows], np.float64)
  front = non_dominated_fronts(obj)[0]
  return sorted((rows[i] for i in front), key=lambda r: r[2])


OBJECTIVES = ('flops', 'params', 'latency')  # nsga2's cost objectives


def nsga2(space, fitness, *, budget=None, seed=0, max_evaluations=None,
          settings=EvolutionSettings(), objectives=('flops',), initial=(),
          state_file='', latency=None, source=None):
  """NSGA-II over (score, and each cost in `objectives`: flops, params,
  latency): parents by binary tournament on (front, crowding), children by
  the evolution's mutation and crossover, survivors by fronts then crowding.
  Returns (Ranking of every architecture evaluated, evaluations);
  `pareto_front(ranking.rows)` is the front over MAdds
  (`latency.front` over milliseconds). `state_file`: saved after every
  generation, resumed from (see `evolution` for `source`);
  `latency`: text -> ms, for a latency budget or objective."""
  st = settings
  bad = [o for o in objectives if o not in OBJECTIVES]
  if bad:
    raise ValueError(f'nsga2 objective {bad[0]!r}: use {", ".join(OBJECTIVES)}')
  if 'latency' in objectives and latency is None:
    raise ValueError('a latency objective needs a latency cost: pass '
                     'latency=MeasuredLatency(...)')
  s = _Search(space, fitness, budget, seed, st.tries, latency)
  cap = max_evaluations or st.population * (st.generations + 1)
  key = {**_key('nsga2', space, s.budget, seed, cap, st, source),
         'objectives': list(objectives)}

  def cost(t, o):
    return s.latency(t) if o == 'latency' else s.cost(t)[
        0 if o == 'flops' else 1]

  def objective(texts):
    return np.asarray([[-s.scores[t]] + [cost(t, o) for o in objectives]
                       for t in texts], np.float64)

  def rank(texts):
    """(front index, crowding) per text."""
    obj = objective(texts)
    level, crowd = np.zeros(len(texts), int), np.zeros(len(texts))
    for f, idx in enumerate(non_dominated_fronts(obj)):
      level[idx], crowd[idx] = f, crowding_distance(obj[idx])
    return level, crowd

  saved = s.load(state_file, key)
  if saved:
    start, pop = saved
  else:
    start, pop = 0, _initial(s, initial, st.population, cap)
    s.evaluate(pop)
    s.save(state_file, key, 0, pop)
  for generation in range(start, st.generations):
    if s.evaluations >= cap or not pop:
      break
    level, crowd = rank(pop)

    def parent():
      i, j = s.rng.integers(len(pop), size=2)
      better = i if (level[i], -crowd[i]) < (level[j], -crowd[j]) else j
      return space.from_string(pop[better])
    kids = s.draw(lambda: _mutate(space, parent, s.rng, st), st.mutations,
                  cap)
    s.evaluate(kids)
    more = s.draw(lambda: _cross(space, parent, s.rng), st.crossovers, cap)
    s.evaluate(more)
    union = pop + kids + more
    obj = objective(union)
    survivors = []
    for idx in non_dominated_fronts(obj):
      if len(survivors) + len(idx) <= st.population:
        survivors.extend(idx)
        continue
      order = np.argsort(-crowding_distance(obj[idx]), kind='stable')
      survivors.extend(idx[order[:st.population - len(survivors)]])
      break
    pop = [union[i] for i in survivors]
    s.save(state_file, key, generation + 1, pop)
  return s.ranking('nsga2'), s.evaluations


STRATEGIES = {'evolution': evolution, 'nsga2': nsga2,
              'random': random_in_band}
