"""`search.strategy`: how a trained supernet's architectures are ranked,
for spaces small enough to enumerate and for those that are not.

  auto              exhaustive where the space can be enumerated; else the
                    searcher's best and the architectures of
                    search.archs_file
  exhaustive        every architecture (refused where there are too many)
  blockwise_budget  block-wise methods: the exact best search.top_k under
                    each budget and the exact Pareto front, by dynamic
                    programming over the block tables (budgeted.py)
  evolution, nsga2, random
                    whole-architecture search (evolution.py), with
                    search.evaluations fitness evaluations per budget; the
                    fitness is the block tables' sum (block-wise methods)
                    or the trained supernet itself (one-shot methods)

Budgets: (search.flops_budget, search.params_budget) and each MAdds budget
of search.flops_budgets; ranking.json gives the best under each and the
Pareto front of score against MAdds. The whole-architecture strategies also
take search.latency_budget (ms, measured on this device for each candidate
inside the other budgets) and nsga2 search.objective (its second objective:
flops, params or latency); ranking.json's `latency` then holds the measured
milliseconds and, for objective=latency, the front of score against them.
"""

from __future__ import annotations

import dataclasses

from bossnax.searchers import evolution as ev

STRATEGIES = ('auto', 'exhaustive', 'blockwise_budget', 'evolution', 'nsga2',
              'random')
WHOLE = ('evolution', 'nsga2', 'random')


@dataclasses.dataclass(frozen=True)
class Plan:
  """What a searcher reads of `config.search` to rank architectures."""
  strategy: str = 'auto'
  evaluations: int = 1000
  budgets: tuple = ((0.0, 0.0),)  # (MAdds M, params M) pairs, 0 = none
  band: tuple = (0.0, 0.0)  # lower edges: min MAdds M, min params M
  settings: ev.EvolutionSettings = ev.EvolutionSettings()
  seed: int = 0
  top_k: int = 10
  latency_budget: float = 0.0  # ms; 0 = none
  latency_batch: int = 1
  objective: str = 'flops'  # nsga2's cost objective
  image_size: int = 0  # of the latency measurement (the run's)

  @classmethod
  def from_config(cls, s, image_size=0) -> 'Plan':
    strategy = s.get('strategy', 'auto')
    if strategy not in STRATEGIES:
      raise ValueError(f'search.strategy={strategy!r}: use one of '
                       f'{", ".join(STRATEGIES)}')
    if strategy == 'blockwise_budget' and s.flops_budget and s.params_budget:
      raise ValueError('search.strategy=blockwise_budget bounds one cost '
                       'per budget: set search.flops_budget or '
                       'search.params_budget, not both')
    budgets = [(float(s.flops_budget), float(s.params_budget))]
    budgets += [(float(f), 0.0) for f in s.get('flops_budgets', ())]
    evo = s.get('evolution', None)
    settings = ev.EvolutionSettings(**(evo.to_dict() if evo is not None
                                       else {}))
    evaluations = int(s.get('evaluations', 1000))
    if evaluations < 1:
      raise ValueError(f'search.evaluations={evaluations}: give 1 or more')
    latency = float(s.get('latency_budget', 0.0))
    objective = s.get('objective', 'flops')
    if objective not in ev.OBJECTIVES:
      raise ValueError(f'search.objective={objective!r}: use one of '
                       f'{", ".join(ev.OBJECTIVES)}')
    if objective != 'flops' and strategy != 'nsga2':
      raise ValueError(f'search.objective={objective} is nsga2\'s second '
                       'objective: set search.strategy=nsga2 (or '
                       'search.latency_budget for a limit)')
    if latency < 0 or int(s.get('latency_batch', 1)) < 1:
      raise ValueError('search.latency_budget must be >= 0 (ms; 0 = none) '
                       'and search.latency_batch >= 1')
    measured = latency > 0 or (objective == 'latency' and strategy == 'nsga2')
    if measured and strategy not in WHOLE:
      raise ValueError(f'search.strategy={strategy}: a measured latency '
                       '(search.latency_budget, search.objective=latency) '
                       'needs search.strategy=evolution, nsga2 or random')
    return cls(strategy, evaluations, tuple(dict.fromkeys(budgets)),
               (float(s.get('min_flops', 0.0)),
                float(s.get('min_params', 0.0))),
               settings, int(s.get('seed', 0)), int(s.top_k), latency,
               int(s.get('latency_batch', 1)), objective, int(image_size))

  @property
  def whole(self) -> bool:
    return self.strategy in WHOLE

  @property
  def measures_latency(self) -> bool:
    return self.latency_budget > 0 or (self.strategy == 'nsga2' and
                                       self.objective == 'latency')


class Memo:
  """A fitness that evaluates each architecture once across the searches
  of every budget (a supernet evaluation is not free); `cache` holds every
  architecture evaluated."""

  def __init__(self, fitness):
    self.fitness, self.cache = fitness, {}

  def __call__(self, texts):
    new = [t for t in dict.fromkeys(texts) if t not in self.cache]
    if new:
      self.cache.update(zip(new, (float(v) for v in self.fitness(new))))
    return [self.cache[t] for t in texts]


def search_whole(plan, space, fitness, initial=()):
  """(every row (arch, score, flops, params) the plan's whole-architecture
  strategy evaluated, one search per budget, best first; the `latency`
  summary for ranking.json, or None where nothing was measured)."""
  found, latency = {}, None
  if plan.measures_latency:
    from bossnax.searchers.latency import MeasuredLatency
    from bossnax.searchers.latency import default_image_size
    latency = MeasuredLatency(space, plan.image_size or default_image_size(
        space), plan.latency_batch)
  for i, (flops, params) in enumerate(plan.budgets):
    budget = ev.Budget(flops, params, *plan.band, plan.latency_budget)
    kw = {} if plan.strategy == 'random' else {'settings': plan.settings,
                                                'initial': initial}
    if plan.strategy == 'nsga2':
      kw['objectives'] = (plan.objective,)
    ranking, _ = ev.STRATEGIES[plan.strategy](
        space, fitness, budget=budget, seed=plan.seed + i,
        max_evaluations=plan.evaluations, latency=latency, **kw)
    found.update((r[0], r) for r in ranking.rows)
  rows = sorted(found.values(), key=lambda r: -r[1])
  return rows, latency and latency.summary(
      rows, with_front=plan.strategy == 'nsga2' and
      plan.objective == 'latency',
      budget_ms=plan.latency_budget)
