r"""The speed of search.strategy=blockwise_budget on the full spaces: the
exact best 10 under MAdds budgets and the exact Pareto front, from block
tables of made-up losses (one table per block, as search.top_n = 1 leaves;
the time does not depend on the losses' values beyond the front's size).

  python benchmarks/blockwise_budget.py [--space=mbconv|hytra|all]

Budgets: the 10/50/90% quantiles of 2,000 random architectures' MAdds.
Prints, per space and budget, the seconds to the result and the best
architecture's MAdds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def tables(space, seed=0):
  rng = np.random.default_rng(seed)
  out, prefix = [], ()
  for k in range(space.num_blocks):
    paths = space.block_paths(k, prefix)
    losses = rng.random(len(paths))
    out.append({tuple(int(v) for p in prefix for v in p): (paths, losses)})
    prefix += (paths[np.argmin(losses)],)
  return out


def main(argv=None):
  from bossnax.searchers import budgeted
  from bossnax.spaces.hytra import HyTraSpace
  from bossnax.spaces.mbconv import MBConvSpace
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--space', default='all', choices=('all', 'mbconv', 'hytra'))
  args = p.parse_args(argv)
  spaces = {'mbconv': MBConvSpace, 'hytra': HyTraSpace}
  for name, make in spaces.items():
    if args.space not in ('all', name):
      continue
    space = make()
    t = tables(space)
    lam = (1.0,) * space.num_blocks
    tic = time.perf_counter()
    front = budgeted.pareto(space, t, lam)
    took = time.perf_counter() - tic
    print(f'{name}: {space.count():.3g} architectures; exact Pareto front '
          f'{len(front)} points in {took:.2f} s')
    rng = np.random.default_rng(0)  # budgets where most architectures lie
    sample = space.costs(np.stack([space.flatten(space.sample(rng))
                                   for _ in range(2000)]))[:, 0]
    for q in (10, 50, 90):
      budget = np.percentile(sample, q) / 1e6
      tic = time.perf_counter()
      rows = budgeted.search(space, t, lam, budget=budget, k=10)
      took = time.perf_counter() - tic
      print(f'  best 10 under {budget:.0f} M MAdds: {took:.2f} s '
            f'(best {space.to_string(rows[0][0])}, {rows[0][2] / 1e6:.1f} M)')


if __name__ == '__main__':
  main()
