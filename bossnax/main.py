"""Train a supernet with a method's stage plan, search it, rank the
architectures.

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

from bossnax.cli import run_main


def print_ranking(ranking, out=None):
  out = out or sys.stdout  # the stream of now, not of the import
  print(f"\nbest architecture: {ranking['best']}", file=out)
  if ranking.get('top'):
    print(f"{'rank':>4}  {'arch':<24} {'score':>10} {'MFLOPs':>9} "
          f"{'Mparams':>8}", file=out)
    for i, r in enumerate(ranking['top']):
      print(f"{i + 1:>4}  {r['arch']:<24} {r['score']:>10.4f} "
            f"{r['flops'] / 1e6:>9.2f} {r['params'] / 1e6:>8.4f}", file=out)
  if ranking.get('per_layer_width_spearman'):
    from bossnax.rank import format_layer_report
    print(format_layer_report(ranking['per_layer_width_spearman']), file=out)
  for b in ranking.get('budgets', ()):
    print(f"best within budget (MFLOPs<={b['flops_budget_M'] or 'any'}, "
          f"Mparams<={b['params_budget_M'] or 'any'}): "
          f"{b['best']['arch'] if b['best'] else 'none fits'}", file=out)
  if len(ranking.get('pareto', ())) > 1:
    print(f"Pareto front (score against MAdds): {len(ranking['pareto'])} "
          'architectures in ranking.json', file=out)


def print_correlations(config, workdir):
  from bossnax import rank
  truth = config.search.truth_file
  scores = os.path.join(workdir, 'scores.csv')
  if truth and os.path.exists(scores):
    if not os.path.exists(truth):
      logging.warning('search.truth_file %s not found: no correlations', truth)
    else:
      try:
        result = rank.evaluate_files(scores, truth)
      except ValueError as e:  # the ranking is written: say why, not fail
        logging.warning('no correlations with %s: %s', truth, e)
        return
      print('\n' + rank.format_report(result))


def _search(config, flags):
  from bossnax import parallel
  from bossnax.run import Run
  workdir = flags['workdir']
  os.makedirs(workdir, exist_ok=True)
  run = Run(config, workdir)
  if parallel.is_main_process():
    from bossnax.config import record_run_config
    record_run_config(workdir, config)
  try:
    _, meta = run.train_and_search()
  finally:
    run.close()
  ranking = run.ranking(meta).write(workdir, config.search)
  if parallel.is_main_process():
    print_ranking(ranking)
    print_correlations(config, workdir)
  if config.get('export_best', False):
    export_best(config, workdir)
  if parallel.is_main_process():
    print(f'\nresults in {workdir}: scores.csv, ranking.json, metrics.jsonl'
          + (', best/' if config.get('export_best', False) else ''))
  return 0


def export_best(config, workdir):
  """WORKDIR/best: the best architecture's spec and inherited weights,
  and its test accuracy without retraining (eval.json) where the method
  trained the classifier (a self-supervised supernet's is untrained)."""
  from bossnax import export, parallel
  from bossnax.methods import build_method
  from bossnax.spaces import make_space
  out = os.path.join(workdir, 'best')
  export.export(config, workdir, out)
  if not build_method(config, make_space(config.space)).objective.uses_labels:
    if parallel.is_main_process():
      print(f'exported the best architecture to {out} with its inherited '
            'weights; its classifier is untrained (no labels): fine-tune it '
            'with python -m bossnax.retrain --config=configs/retrain_hytra.py'
            f':cifar --config.spec={out}/spec.json --config.init_weights='
            f'{out}/weights [--config.train.linear_probe=True] '
            '(docs/retrain.md)')
    return
  result = export.evaluate(config, out)
  if parallel.is_main_process():
    print(f"exported {result['arch']} to {out}: test top-1 "
          f"{result['top1']:.4f} on {result['images']} images with its "
          'inherited weights (no retraining)')


def main(argv=None):
  return run_main(_search, argv, {'workdir': None})


if __name__ == '__main__':
  sys.exit(main())
