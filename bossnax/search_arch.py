"""Search a score table or a finished run for the best architecture under a
budget.

  python -m bossnax.search_arch --space=nats \
      --scores=../shared/benchmarks/nats_sss_cifar10_sample2048.csv \
      --score_column=cifar10_test_acc --strategy=evolution --evaluations=205 \
      [--flops_budget=MFLOPS] [--params_budget=MPARAMS] [--min_flops=MFLOPS] \
      [--seed=S] [--out=DIR]
  python -m bossnax.search_arch --workdir=RUN --strategy=blockwise_budget \
      --flops_budget=400 [--out=DIR]

--scores: a CSV with an `arch` column and a score column (higher is better;
a workdir's scores.csv works); architectures missing from it are
unavailable. --workdir: a finished `python -m bossnax.main` run is the
fitness: a block-wise method's block tables (-sum_k lambda_k * loss_k), a
one-shot method's supernet (the validation loss of each whole network, or
its top-1 error where the run's search.fitness=error).
Every lookup is one evaluation. Strategies: evolution (SPOS), nsga2 (score
against MAdds), random (random search inside the cost band, DATA's), and
for block-wise runs blockwise_budget (the exact best under the budget and
the exact Pareto front, by dynamic programming over the block tables).
Prints the best architecture with its MAdds, params and score and the
evaluations used; --out=DIR writes DIR/search.json and DIR/pareto.png and
saves an evolution / NSGA-II search after every generation in
DIR/search_state.json, from which the same command resumes
(docs/search.md).
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


COSTS = {  # x of pareto.png: (the row's cost, axis label)
    'flops': (lambda r: r[2] / 1e6, 'MAdds (M)'),
    'params': (lambda r: r[3] / 1e6, 'params (M)'),
}


def plot(rows, front, budget, path, title, cost='flops', ms=None):
  """Score against the cost (MAdds, params or measured ms): every
  evaluated architecture, the front, the budget line."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  x, label = (COSTS[cost] if cost != 'latency' else
              (lambda r: ms[r[0]], 'latency (ms, this device)'))
  rows = [r for r in rows if cost != 'latency' or r[0] in ms]
  fig, ax = plt.subplots(figsize=(6, 4))
  ax.scatter([x(r) for r in rows], [r[1] for r in rows], s=8,
             color='0.7', label=f'evaluated ({len(rows)})')
  ax.plot([x(r) for r in front], [r[1] for r in front], 'o-',
          color='#ee6677', ms=4, label='Pareto front')
  if budget:
    ax.axvline(budget, color='#4477aa', ls='--', label='budget')
  ax.set_xlabel(label)
  ax.set_ylabel('score (higher is better)')
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def jax_device():
  import jax
  return jax.devices()[0].device_kind


def from_workdir(workdir, strategy):
  """(config, space, fitness, (block-wise searcher, meta) or None) of a
  finished run. The fitness outlives the Run (closed here): scoring needs
  only its model, scorer and the search images read now."""
  from bossnax.config import load_run_config
  from bossnax.run import Run
  from bossnax.searchers import BlockwiseBeam
  config = load_run_config(workdir)
  run = Run(config, workdir, write_metrics=False)
  try:
    restored = run.restore()
    if restored is None:
      raise ValueError(f'no checkpoint in {workdir}/checkpoints: train '
                       'first with python -m bossnax.main')
    _, state, meta = restored
    K = len(run.method.stages)
    if meta['block'] < K:
      raise ValueError(f'the run in {workdir} stopped in block '
                       f"{meta['block'] + 1} of {K}: finish it with "
                       'python -m bossnax.main first')
    if isinstance(run.searcher, BlockwiseBeam):
      return (config, run.space, run.searcher.block_scorer(meta),
              (run.searcher, meta))
    if strategy == 'blockwise_budget':
      raise ValueError(f'--strategy=blockwise_budget needs block tables; '
                       f'{config.method} scores whole networks: use '
                       'evolution, nsga2 or random')
    from bossnax.searchers.strategies import Memo
    from bossnax.searchers.whole import supernet_fitness
    val, val_w, calib, val_y = run.search_images()

    def losses(flat):  # the run's search.fitness: loss or top-1 error
      out = run.scorer.score_archs(state, 0, flat, val, calib, val_w, val_y)
      if config.search.fitness == 'error':
        out = 1.0 - run._top1(run.scorer, 'search.fitness=error')
      return out
    return config, run.space, Memo(supernet_fitness(
        run.space, losses, config.search.path_chunk)), None
  finally:
    run.close()


def _exact(space, blockwise, args):
  """blockwise_budget: the exact best under the budget and the exact front
  from the run's block tables (rows, front)."""
  from bossnax.searchers import budgeted
  if args.flops_budget and args.params_budget:
    raise ValueError('--strategy=blockwise_budget bounds one cost: give '
                     '--flops_budget or --params_budget, not both')
  searcher, meta = blockwise
  tables = searcher.block_tables(meta)
  cost = 'params' if args.params_budget else 'flops'
  rows = budgeted.search(space, tables, searcher.lambdas,
                         budget=args.params_budget or args.flops_budget,
                         cost=cost, k=args.top_k)
  front = budgeted.pareto(space, tables, searcher.lambdas)
  text = lambda rs: [(space.to_string(a), s, f, p) for a, s, f, p in rs]
  return text(rows), text(front)


def main(argv=None):
  from bossnax.searchers import evolution as ev
  p = argparse.ArgumentParser(prog='python -m bossnax.search_arch',
                              description=__doc__.splitlines()[0])
  p.add_argument('--space', choices=NAMES, help='with --scores')
  p.add_argument('--scores', default='', help='CSV: arch + a score')
  p.add_argument('--workdir', default='', help='a finished bossnax.main run')
  p.add_argument('--score_column', default='score')
  p.add_argument('--strategy', default='evolution',
                 choices=sorted(ev.STRATEGIES) + ['blockwise_budget'])
  p.add_argument('--evaluations', type=int, default=1000)
  p.add_argument('--flops_budget', type=float, default=0.0, help='MAdds, M')
  p.add_argument('--params_budget', type=float, default=0.0, help='M')
  p.add_argument('--min_flops', type=float, default=0.0, help='MAdds, M')
  p.add_argument('--min_params', type=float, default=0.0, help='M')
  p.add_argument('--latency_budget', type=float, default=0.0,
                 help='ms: each candidate under the other budgets is jitted '
                 'and timed on this device (searchers/latency.py)')
  p.add_argument('--latency_batch', type=int, default=1)
  p.add_argument('--objective', default='flops', choices=ev.OBJECTIVES,
                 help='nsga2: the cost it trades the score against '
                 '(latency: measured for every candidate)')
  p.add_argument('--image_size', type=int, default=0,
                 help='for latency: the input side (default: the run\'s, '
                 'else 32 for nats and 224 for the others)')
  p.add_argument('--seed', type=int, default=0)
  for name, value in vars(ev.EvolutionSettings()).items():
    if name != 'tries':
      p.add_argument(f'--{name}', type=type(value), default=value,
                     help='evolution / nsga2')
  p.add_argument('--top_k', type=int, default=10,
                 help='blockwise_budget: the best k under the budget')
  p.add_argument('--out', default='')
  args = p.parse_args(argv)
  if args.evaluations < 1:
    return fail(ValueError(f'--evaluations={args.evaluations}: give 1 or '
                           'more'))
  if bool(args.scores) == bool(args.workdir):
    return fail(ValueError('give --scores=FILE.csv (with --space) or '
                           '--workdir=RUN, one of them'))
  if args.scores and not args.space:
    return fail(ValueError('--scores needs --space (nats, mbconv, hytra)'))
  budget = ev.Budget(args.flops_budget, args.params_budget, args.min_flops,
                     args.min_params, args.latency_budget)
  state_file = (os.path.join(args.out, 'search_state.json')
                if args.out and args.strategy in ('evolution', 'nsga2')
                else '')
  try:
    latency, image_size = None, 0
    if args.workdir:
      config, space, fitness, blockwise = from_workdir(args.workdir,
                                                       args.strategy)
      image_size = int(config.get('data', {}).get('image_size', 0))
    else:
      space = make_space(ml_collections.ConfigDict({'name': args.space}))
      fitness = ev.TableFitness.from_csv(space, args.scores,
                                         args.score_column)
      blockwise = None
      if args.strategy == 'blockwise_budget':
        raise ValueError('--strategy=blockwise_budget searches the block '
                         'tables of a --workdir, not a score table')
    if args.objective != 'flops' and args.strategy != 'nsga2':
      raise ValueError(f'--objective={args.objective} is nsga2\'s: add '
                       '--strategy=nsga2 (or use --latency_budget)')
    if args.latency_budget < 0 or args.latency_batch < 1:
      raise ValueError('--latency_budget must be >= 0 (ms) and '
                       '--latency_batch >= 1')
    if args.strategy == 'blockwise_budget':
      if args.latency_budget or args.min_flops or args.min_params:
        raise ValueError('--strategy=blockwise_budget takes an upper bound '
                         '(--flops_budget or --params_budget) only: use '
                         'evolution, nsga2 or random for a latency budget '
                         'or a band')
      rows, front = _exact(space, blockwise, args)
      used = 0
    else:
      kw = {}
      by_latency = args.strategy == 'nsga2' and args.objective == 'latency'
      if args.latency_budget or by_latency:
        from bossnax.searchers.latency import (MeasuredLatency,
                                               default_image_size)
        size = args.image_size or image_size or default_image_size(space)
        latency = kw['latency'] = MeasuredLatency(space, size,
                                                  args.latency_batch)
      if args.strategy == 'nsga2':
        kw['objectives'] = (args.objective,)
      if args.strategy != 'random':
        kw['settings'] = ev.EvolutionSettings(**{
            n: getattr(args, n) for n in vars(ev.EvolutionSettings())
            if n != 'tries'})
        if state_file:
          os.makedirs(args.out, exist_ok=True)
          kw['state_file'] = state_file
          kw['source'] = {  # a resume must read the same fitness
              'scores': os.path.abspath(args.scores) if args.scores else '',
              'score_column': args.score_column if args.scores else '',
              'workdir': (os.path.abspath(args.workdir) if args.workdir
                          else ''),
              'latency': ([latency.batch, latency.image_size] if latency
                          else None)}
      ranking, used = ev.STRATEGIES[args.strategy](
          space, fitness, budget=budget, seed=args.seed,
          max_evaluations=args.evaluations, **kw)
      rows = ranking.rows
      if by_latency:
        from bossnax.searchers.latency import front as latency_front
        front = latency_front(rows, latency.measured)
      else:
        front = ev.pareto_front(rows, (args.objective,) if
                                args.strategy == 'nsga2' else ('flops',))
  except USER_ERRORS as e:
    return fail(e)
  if not rows:
    return fail(ValueError('no architecture fits the budget: raise '
                           '--flops_budget / --params_budget'))
  row = lambda r: {**_row(r), **({'latency_ms': latency.measured[r[0]]}
                                 if latency else {})}
  best = row(rows[0])
  how = (f'{used} evaluations, {args.strategy}' if used else
         'exact, blockwise_budget')
  ms = f"  {best['latency_ms']:.2f} ms" if latency else ''
  print(f"best: {best['arch']}  score {best['score']:.4f}  "
        f"{best['flops'] / 1e6:.1f} MAdds(M)  {best['params'] / 1e6:.3f} M "
        f"params{ms}  ({how})")
  if args.out:
    os.makedirs(args.out, exist_ok=True)
    summary = {'space': space.name, 'strategy': args.strategy,
               'seed': args.seed,
               'source': args.scores or os.path.abspath(args.workdir),
               'budget': vars(budget), 'best': best, 'evaluations': used,
               'pareto': [row(r) for r in front],
               'evaluated': [row(r) for r in rows]}
    if latency:
      summary['latency'] = {'device': str(jax_device()),
                            'batch': args.latency_batch,
                            'image_size': latency.image_size}
    with open(os.path.join(args.out, 'search.json'), 'w') as f:
      json.dump(summary, f, indent=1)
    cost = args.objective if args.strategy == 'nsga2' else 'flops'
    budget = {'flops': args.flops_budget, 'params': args.params_budget,
              'latency': args.latency_budget}[cost]
    plot(rows, front, budget, os.path.join(args.out, 'pareto.png'),
         f'{space.name}: {how}', cost, latency.measured if latency else None)
    print(f'wrote {args.out}/search.json and pareto.png')
  return 0


if __name__ == '__main__':
  sys.exit(main())
