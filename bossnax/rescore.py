"""Search a finished run again with other search options, without training.

  python -m bossnax.rescore --config=CONFIG --workdir=DIR --out=DIR/raw \
      --config.search.centre=raw [--config.search.recalibrate_bn=False ...]

Loads DIR's final checkpoint and scores every block again, under the same
prefixes the run scored (training was conditioned on them), with the
`search.*` options of this command line; writes scores.csv and ranking.json
into --out and prints the correlations when search.truth_file is set. This is
how docs/results.md compares scoring variants on one trained supernet.

Exact because a finished block never changes afterwards: its online weights
and batch statistics are frozen and its EMA target stops moving (train.py),
so re-scoring with the run's own options reproduces its tables (tested).
Change only `search.*` options: the rest must describe the trained run.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import sys

from bossnax.config import parse_args


def rescore(config, workdir, out):
  """Returns (ranking, meta with the new tables, max |new - run's own|)."""
  import numpy as np
  from bossnax.run import Run, write_results, _prefix_vector
  run = Run(config, workdir, write_metrics=False)
  try:
    K = run.space.num_blocks
    restored = run.ckpt.restore_latest(run.trainer.state_shapes())
    if restored is None:
      raise FileNotFoundError(f'no checkpoint in {workdir}/checkpoints: '
                              'train first with python -m bossnax.main')
    _, state, meta = restored
    if meta['block'] < K:
      raise ValueError(f'the run in {workdir} stopped in block '
                       f"{meta['block'] + 1} of {K}: finish it with "
                       'python -m bossnax.main first')
    val, val_w, calib = run._search_images()
    new_meta = copy.deepcopy(meta)
    diff = 0.0
    for k in range(K):
      for entry in new_meta['tables'][str(k)]:
        paths = [np.asarray(p, np.int32) for p in entry['prefix']]
        tab, losses = run.scorer.score_block(
            state, k, _prefix_vector(run.space, paths), val, calib, val_w)
        if tab.tolist() != entry['paths']:
          raise ValueError(f'block {k} paths differ from the run: pass the '
                           'config the run was trained with')
        diff = max(diff, float(np.abs(losses - np.asarray(
            entry['losses'])).max()))
        entry['losses'] = [float(v) for v in losses]
  finally:
    run.close()
  os.makedirs(out, exist_ok=True)
  ranking = write_results(config, run.space, new_meta, out)
  return ranking, new_meta, diff


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  logging.basicConfig(level=logging.WARNING, format='%(asctime)s %(message)s')
  try:
    config, flags = parse_args(argv, {'workdir': None, 'out': None})
  except ValueError as e:  # ConfigError, or a preset's own check
    print(f'error: {str(e).splitlines()[0]}', file=sys.stderr)
    return 2
  from bossnax import parallel, rank
  from bossnax.main import _print_ranking
  try:
    ranking, _, diff = rescore(config, flags['workdir'], flags['out'])
  except (ValueError, FileNotFoundError, RuntimeError) as e:
    print(f'error: {str(e).splitlines()[0]}', file=sys.stderr)
    return 2
  if not parallel.is_main_process():
    return 0
  with open(os.path.join(flags['out'], 'search_config.json'), 'w') as f:
    json.dump(config.search.to_dict(), f, indent=1)
  _print_ranking(ranking)
  print(f'largest change of a block loss against the run: {diff:.3g}')
  truth, scores = config.search.truth_file, os.path.join(flags['out'],
                                                         'scores.csv')
  if truth and os.path.exists(truth) and os.path.exists(scores):
    print('\n' + rank.format_report(rank.evaluate_files(scores, truth)))
  return 0


if __name__ == '__main__':
  sys.exit(main())
