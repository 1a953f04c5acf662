"""The ranking of a search: what scores.csv, ranking.json, export and
rescore read. Rows are (arch string, score, MAdds, params), higher score
better, best first."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from bossnax import parallel

COST_COLUMNS = {'flops': 2, 'params': 3}  # of a row (arch, score, ...)


def cost_front(rows, cost='flops'):
  """The rows no other row beats on both score and `cost` (a column name
  or a function of the row, e.g. its measured latency), cheapest first
  (one sort: among equal costs only the best score can be on it)."""
  c = cost if callable(cost) else (lambda r, i=COST_COLUMNS[cost]: r[i])
  front, best = [], -np.inf
  for r in sorted(rows, key=lambda r: (c(r), -r[1])):
    if r[1] > best:
      front.append(r)
      best = r[1]
  return front


@dataclasses.dataclass
class Ranking:
  space: object
  rows: list  # [(arch, score, flops, params)], best first
  best: str  # the searcher's best architecture (string form)
  sign: str = 'higher is better'
  note: str = ''
  pareto: list | None = None  # an exact front (blockwise_budget); else
  # the front of the rows is computed
  extra: dict = dataclasses.field(default_factory=dict)  # more summary keys
  files: dict = dataclasses.field(default_factory=dict)  # name -> JSON obj,
  # written beside ranking.json (GreedyNAS's pool.json)

  def front(self):
    """The rows no other beats on both score and MAdds, cheapest first."""
    return self.pareto if self.pareto is not None else cost_front(self.rows)

  @classmethod
  def from_scores(cls, space, archs, scores, best, sign):
    rows = []
    costs = space.costs(np.stack([space.flatten(a) for a in archs])) if len(
        archs) else []  # vectorised where the space's counter is additive
    for arch, score, (flops, params) in zip(archs, scores, costs):
      rows.append((space.to_string(arch), float(score), int(flops),
                   int(params)))
    rows.sort(key=lambda r: -r[1])
    return cls(space, rows, best, sign)

  def top(self, k):
    return [dict(zip(('arch', 'score', 'flops', 'params'), r))
            for r in self.rows[:k]]

  def within(self, flops_budget_m=0.0, params_budget_m=0.0):
    """The best row within the budgets (MFLOPs, M params; 0 = none)."""
    for r in self.rows:
      if ((not flops_budget_m or r[2] <= flops_budget_m * 1e6) and
          (not params_budget_m or r[3] <= params_budget_m * 1e6)):
        return dict(zip(('arch', 'score', 'flops', 'params'), r))
    return None

  def summary(self, top_k=10, flops_budget_m=0.0, params_budget_m=0.0,
              flops_budgets=()):
    """The dict written to ranking.json: the best architectures, the best
    under (flops_budget_m, params_budget_m) and under each MAdds budget of
    `flops_budgets` (M) as 'budgets', the Pareto front of score against
    MAdds."""
    out = {'space': self.space.name, 'best': self.best, 'sign': self.sign}
    if self.note:
      out['note'] = self.note
    out['top'] = self.top(top_k)
    from bossnax.rank import layer_report  # the sanity report (no truth)
    layers = layer_report({r[0]: r[1:] for r in self.rows}) if self.rows else None
    if layers is not None:
      out['per_layer_width_spearman'] = layers
    budgets = [(flops_budget_m, params_budget_m)] * bool(
        flops_budget_m or params_budget_m)
    budgets += [(float(f), 0.0) for f in flops_budgets]
    if self.rows and budgets:
      out['budgets'] = [{'flops_budget_M': f, 'params_budget_M': p,
                         'best': self.within(f, p)}
                        for f, p in dict.fromkeys(budgets)]
    if self.rows:
      out['pareto'] = [dict(zip(('arch', 'score', 'flops', 'params'), r))
                       for r in self.front()]
    out.update(self.extra)
    return out

  def write(self, workdir, search_cfg):
    """scores.csv (every architecture, when there are rows) and
    ranking.json into `workdir` (process 0); returns the summary."""
    s = search_cfg
    summary = self.summary(s.top_k, s.flops_budget, s.params_budget,
                           s.get('flops_budgets', ()))
    if not parallel.is_main_process():
      return summary
    if self.rows:
      with open(os.path.join(workdir, 'scores.csv'), 'w') as f:
        f.write('arch,score,flops,params\n')
        for arch, score, flops, params in self.rows:
          f.write(f'{arch},{score:.6f},{flops},{params}\n')
    with open(os.path.join(workdir, 'ranking.json'), 'w') as f:
      json.dump(summary, f, indent=1)
    for name, obj in self.files.items():
      with open(os.path.join(workdir, name), 'w') as f:
        json.dump(obj, f, indent=1)
    return summary
