r"""Whole-architecture searchers against a ground truth nobody here wrote:
the NATS-Bench sample's CIFAR-10 accuracies (../shared) as the fitness
table. For each FLOPs budget (the table's MAdds quartiles and no budget)
and each seed, each strategy gets 10% of the table in evaluations; a run
succeeds when its best architecture under the budget is in the top 1% of
the table's architectures under that budget.

  python benchmarks/search_validation.py [--seeds=10] [--fraction=0.1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

TABLE = os.path.join(ROOT, '..', 'shared', 'benchmarks',
                     'nats_sss_cifar10_sample2048.csv')


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--seeds', type=int, default=10)
  p.add_argument('--fraction', type=float, default=0.1)
  p.add_argument('--table', default=TABLE)
  p.add_argument('--out', default='')
  args = p.parse_args(argv)
  from bossnax import defaults
  from bossnax.searchers.evolution import (STRATEGIES, Budget,
                                           TableFitness)
  from bossnax.spaces import make_space
  space = make_space(defaults.search_config().space)
  table = TableFitness.from_csv(space, args.table, 'cifar10_test_acc').table
  flops = {t: space.flops_params(space.from_string(t))[0] / 1e6
           for t in table}
  evals = int(round(args.fraction * len(table)))
  budgets = [float(np.quantile(list(flops.values()), q))
             for q in (0.25, 0.5, 0.75)] + [0.0]
  print(f'{len(table)} architectures, {evals} evaluations per search, '
        f'{args.seeds} seeds; success = best under the budget in the top 1% '
        'of the table under it')
  print(f"{'strategy':<10} {'budget MFLOPs':>13} {'success':>8} "
        f"{'median rank %':>13} {'s':>5}")
  results = []
  for name, fn in STRATEGIES.items():
    for b in budgets:
      ok = sorted((s for t, s in table.items() if not b or flops[t] <= b),
                  reverse=True)
      cut = ok[max(int(np.ceil(0.01 * len(ok))) - 1, 0)]
      hits, ranks, tic = 0, [], time.time()
      for seed in range(args.seeds):
        fitness = TableFitness(table)
        ranking, used = fn(space, fitness, budget=Budget(flops=b), seed=seed,
                           max_evaluations=evals)
        assert used == fitness.evaluations <= evals
        best = ranking.rows[0][1]
        hits += best >= cut
        ranks.append(100 * (sum(v > best for v in ok)) / len(ok))
      secs = (time.time() - tic) / args.seeds
      results.append({'strategy': name, 'budget_mflops': b, 'success': hits,
                      'seeds': args.seeds, 'median_rank_pct':
                      float(np.median(ranks)), 'evaluations': evals})
      print(f"{name:<10} {b or float('inf'):>13.1f} {hits:>5}/{args.seeds} "
            f"{np.median(ranks):>13.2f} {secs:>5.1f}", flush=True)
  if args.out:
    json.dump(results, open(args.out, 'w'), indent=1)
  return 0


if __name__ == '__main__':
  sys.exit(main())
