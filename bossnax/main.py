"""Train a supernet block by block, search it, and rank the architectures.

  python -m bossnax.main --config=configs/nats_cifar10.py:quick --workdir=/tmp/run
  python -m bossnax.main --config=configs/nats_cifar10.py --workdir=DIR \
      --config.data.source=tfds --config.train.paths_per_step=4

Writes into DIR: metrics.jsonl (and TensorBoard events), checkpoints/,
scores.csv (every architecture: higher score = better), ranking.json.
Started again on the same DIR, it resumes.
"""

from __future__ import annotations

import logging
import os
import sys

from bossnax.config import parse_args, setup_logging


def _print_ranking(ranking, out=sys.stdout):
  print(f"\nbest architecture: {ranking['best']}", file=out)
  if ranking.get('top'):
    print(f"{'rank':>4}  {'arch':<24} {'score':>10} {'MFLOPs':>9} "
          f"{'Mparams':>8}", file=out)
    for i, r in enumerate(ranking['top']):
      print(f"{i + 1:>4}  {r['arch']:<24} {r['score']:>10.4f} "
            f"{r['flops'] / 1e6:>9.2f} {r['params'] / 1e6:>8.4f}", file=out)
  if ranking.get('budget'):
    b = ranking['budget']
    print(f"best within budget (MFLOPs<={b['flops_budget_M'] or 'any'}, "
          f"Mparams<={b['params_budget_M'] or 'any'}): "
          f"{b['best']['arch'] if b['best'] else 'none fits'}", file=out)


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  setup_logging()
  try:
    config, flags = parse_args(argv, {'workdir': None})
  except ValueError as e:  # ConfigError, or a preset's own check
    print(f'error: {str(e).splitlines()[0]}', file=sys.stderr)
    return 2
  # Imported after argument checks so a typo fails in a second, not after
  # JAX has started.
  from bossnax import parallel, rank
  from bossnax.run import Run, write_results
  workdir = flags['workdir']
  os.makedirs(workdir, exist_ok=True)
  try:
    run = Run(config, workdir)
  except (ValueError, FileNotFoundError, RuntimeError) as e:
    print(f'error: {str(e).splitlines()[0]}', file=sys.stderr)
    return 2
  if parallel.is_main_process():
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=1))
  try:
    _, meta = run.train_and_search()
  except (ValueError, RuntimeError, MemoryError) as e:  # bad checkpoint, OOM
    print(f'error: {str(e).splitlines()[0]}', file=sys.stderr)
    return 2
  finally:
    run.close()
  ranking = write_results(config, run.space, meta, workdir)
  if not parallel.is_main_process():
    return 0
  _print_ranking(ranking)
  truth = config.search.truth_file
  scores = os.path.join(workdir, 'scores.csv')
  if truth and os.path.exists(scores):
    if not os.path.exists(truth):
      logging.warning('search.truth_file %s not found: no correlations', truth)
    else:
      result = rank.evaluate_files(scores, truth)
      print('\n' + rank.format_report(result))
  print(f'\nresults in {workdir}: scores.csv, ranking.json, metrics.jsonl')
  return 0


if __name__ == '__main__':
  sys.exit(main())
