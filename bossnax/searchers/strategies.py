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
Pareto front of score against MAdds.
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

  @classmethod
  def from_config(cls, s) -> 'Plan':
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
    return cls(strategy, evaluations, tuple(dict.fromkeys(budgets)),
               (float(s.get('min_flops', 0.0)),
                float(s.get('min_params', 0.0))),
               settings, int(s.get('seed', 0)), int(s.top_k))

  @property
  def whole(self) -> bool:
    return self.strategy in WHOLE


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
  """Every row (arch, score, flops, params) the plan's whole-architecture
  strategy evaluated, one search per budget, best first."""
  found = {}
  for i, (flops, params) in enumerate(plan.budgets):
    budget = ev.Budget(flops, params, *plan.band)
    kw = {} if plan.strategy == 'random' else {'settings': plan.settings,
                                                'initial': initial}
    ranking, _ = ev.STRATEGIES[plan.strategy](
        space, fitness, budget=budget, seed=plan.seed + i,
        max_evaluations=plan.evaluations, **kw)
    found.update((r[0], r) for r in ranking.rows)
  return sorted(found.values(), key=lambda r: -r[1])
