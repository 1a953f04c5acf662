"""Search a score table for the best architecture under a budget.

  python -m bossnax.search_arch --space=nats \
      --scores=../shared/benchmarks/nats_sss_cifar10_sample2048.csv \
      --score_column=cifar10_test_acc --strategy=evolution --evaluations=205 \
      [--flops_budget=MFLOPS] [--params_budget=MPARAMS] [--min_flops=MFLOPS] \
      [--seed=S] [--out=DIR]

FILE: a CSV with an `arch` column and a score column (higher is better; a
workdir's scores.csv works); architectures missing from it are unavailable.
Every lookup is one evaluation. Strategies: evolution (SPOS), nsga2 (score
against MAdds), random (random search inside the cost band, DATA's). Prints
the best architecture with its MAdds, params and score and the evaluations
used; --out=DIR writes DIR/search.json and DIR/pareto.png (docs/search.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import ml_collections

from bossnax.cli import USER_ERRORS, fail
from bossnax.spaces import NAMES, make_space


def _row(r):
  return dict(zip(('arch', 'score', 'flops', 'params'), r))


def plot(rows, front, budget, path, title):
  """Score against MAdds: every evaluated architecture, the front, the
  budget line."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6, 4))
  ax.scatter([r[2] / 1e6 for r in rows], [r[1] for r in rows], s=8,
             color='0.7', label=f'evaluated ({len(rows)})')
  ax.plot([r[2] / 1e6 for r in front], [r[1] for r in front], 'o-',
          color='#ee6677', ms=4, label='Pareto front')
  if budget:
    ax.axvline(budget, color='#4477aa', ls='--', label='MAdds budget')
  ax.set_xlabel('MAdds (M)')
  ax.set_ylabel('score (higher is better)')
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv=None):
  from bossnax.searchers import evolution as ev
  p = argparse.ArgumentParser(prog='python -m bossnax.search_arch',
                              description=__doc__.splitlines()[0])
  p.add_argument('--space', required=True, choices=NAMES)
  p.add_argument('--scores', required=True, help='CSV: arch + a score')
  p.add_argument('--score_column', default='score')
  p.add_argument('--strategy', default='evolution',
                 choices=sorted(ev.STRATEGIES))
  p.add_argument('--evaluations', type=int, default=1000)
  p.add_argument('--flops_budget', type=float, default=0.0, help='MAdds, M')
  p.add_argument('--params_budget', type=float, default=0.0, help='M')
  p.add_argument('--min_flops', type=float, default=0.0, help='MAdds, M')
  p.add_argument('--min_params', type=float, default=0.0, help='M')
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--mutation_prob', type=float,
                 default=ev.EvolutionSettings.mutation_prob)
  p.add_argument('--out', default='')
  args = p.parse_args(argv)
  if args.evaluations < 1:
    return fail(ValueError(f'--evaluations={args.evaluations}: give 1 or '
                           'more'))
  try:
    space = make_space(ml_collections.ConfigDict({'name': args.space}))
    fitness = ev.TableFitness.from_csv(space, args.scores, args.score_column)
    budget = ev.Budget(args.flops_budget, args.params_budget, args.min_flops,
                       args.min_params)
    kw = {}
    if args.strategy != 'random':
      kw['settings'] = ev.EvolutionSettings(mutation_prob=args.mutation_prob)
    ranking, used = ev.STRATEGIES[args.strategy](
        space, fitness, budget=budget, seed=args.seed,
        max_evaluations=args.evaluations, **kw)
  except USER_ERRORS as e:
    return fail(e)
  if not ranking.rows:
    return fail(ValueError('no architecture of the table fits the budget: '
                           'raise --flops_budget / --params_budget'))
  best = _row(ranking.rows[0])
  front = ev.pareto_front(ranking.rows)
  print(f"best: {best['arch']}  score {best['score']:.4f}  "
        f"{best['flops'] / 1e6:.1f} MAdds(M)  {best['params'] / 1e6:.3f} M "
        f"params  ({used} evaluations, {args.strategy})")
  if args.out:
    os.makedirs(args.out, exist_ok=True)
    summary = {'space': args.space, 'strategy': args.strategy,
               'seed': args.seed, 'scores': args.scores,
               'budget': vars(budget), 'best': best, 'evaluations': used,
               'pareto': [_row(r) for r in front],
               'evaluated': [_row(r) for r in ranking.rows]}
    with open(os.path.join(args.out, 'search.json'), 'w') as f:
      json.dump(summary, f, indent=1)
    plot(ranking.rows, front, args.flops_budget,
         os.path.join(args.out, 'pareto.png'),
         f'{args.space} {args.strategy}: {used} evaluations')
    print(f'wrote {args.out}/search.json and pareto.png')
  return 0


if __name__ == '__main__':
  sys.exit(main())
