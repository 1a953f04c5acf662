"""Search a finished run again with other search options, without training.

  python -m bossnax.rescore --config=CONFIG --workdir=DIR --out=DIR/raw \
      --config.search.centre=raw [--config.search.recalibrate_bn=False ...]

Loads DIR's final checkpoint and scores every block again, under the same
prefixes the run scored (training was conditioned on them), with the
`search.*` options of this command line; writes scores.csv and ranking.json
into --out and prints the correlations when search.truth_file is set. This is
how docs/results.md compares scoring variants on one trained supernet.

Exact because a finished block never changes afterwards: its online weights
and batch statistics are frozen and its EMA target stops moving, so
re-scoring with the run's own options reproduces its tables (tested).
Change only `search.*` options: the rest must describe the trained run.
"""

from __future__ import annotations

import json
import os
import sys

from bossnax.cli import run_main


def rescore(config, workdir, out):
  """Returns (ranking summary, meta with the new tables, max |new - run's
  own|)."""
  from bossnax.run import Run
  run = Run(config, workdir, write_metrics=False)
  try:
    K = len(run.method.stages)
    restored = run.restore()
    if restored is None:
      raise FileNotFoundError(f'no checkpoint in {workdir}/checkpoints: '
                              'train first with python -m bossnax.main')
    _, state, meta = restored
    if meta['block'] < K:
      raise ValueError(f'the run in {workdir} stopped in block '
                       f"{meta['block'] + 1} of {K}: finish it with "
                       'python -m bossnax.main first')
    val, val_w, calib, val_y = run.search_images()
    new_meta, diff = run.searcher.rescore(
        meta, lambda k, prefix: run.scorer.score_block(
            state, k, prefix, val, calib, val_w, val_y),
        score_archs=lambda archs: run.scorer.score_archs(
            state, 0, archs, val, calib, val_w, val_y))
  finally:
    run.close()
  os.makedirs(out, exist_ok=True)
  ranking = run.ranking(new_meta).write(out, config.search)
  return ranking, new_meta, diff


def _rescore(config, flags):
  from bossnax import parallel
  from bossnax.main import print_correlations, print_ranking
  ranking, _, diff = rescore(config, flags['workdir'], flags['out'])
  if not parallel.is_main_process():
    return 0
  with open(os.path.join(flags['out'], 'search_config.json'), 'w') as f:
    json.dump(config.search.to_dict(), f, indent=1)
  print_ranking(ranking)
  print(f'largest change of a block loss against the run: {diff:.3g}')
  print_correlations(config, flags['out'])
  return 0


def main(argv=None):
  return run_main(_rescore, argv, {'workdir': None, 'out': None})


if __name__ == '__main__':
  sys.exit(main())
