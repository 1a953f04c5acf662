"""How well do scores rank architectures? Correlations against ground truth,
next to the trivial size baselines any ranking must beat.

  python -m bossnax.rank --scores=DIR/scores.csv \
      --truth=../shared/benchmarks/nats_sss_cifar10_sample2048.csv \
      [--truth_column=NAME] [--json] [--plot=fig.png]

scores.csv: arch,score,flops,params (higher score = better). The truth file
has an `arch` column and an accuracy column: the one whose name contains
'acc', else the last numeric one, or --truth_column. Baselines, computed
here: params, flops, and the sum of log channel counts (for `c0:c1:...`
architectures). Also: mean Spearman inside FLOPs deciles (what a ranking
knows beyond size) and the regret of the pick at FLOPs budgets.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import warnings

import numpy as np
from scipy import stats

QUANTILES = (0.1, 0.25, 0.5, 0.75, 1.0)


def _read_csv(path):
  """(header, rows as dicts); header names stripped of spaces and BOM."""
  if not os.path.isfile(path):
    raise ValueError(f'{path} not found: check the path')
  try:
    with open(path, newline='', encoding='utf-8-sig') as f:
      reader = csv.reader(f)
      header = [h.strip() for h in next(reader, [])]
      rows = [dict(zip(header, (v.strip() for v in r))) for r in reader if r]
  except (OSError, UnicodeDecodeError) as e:
    raise ValueError(f'cannot read {path} as CSV: {e}') from None
  if not rows:
    raise ValueError(f'{path} has no rows: expected a header and data lines')
  return header, rows


def _floats(path, rows, column):
  try:
    return [float(r[column]) for r in rows]
  except (ValueError, TypeError, KeyError):
    bad = next(i for i, r in enumerate(rows) if not _is_float(r.get(column)))
    raise ValueError(f'{path} line {bad + 2}: column {column!r} is '
                     f'{rows[bad].get(column)!r}, not a number: fix or drop '
                     'that row') from None


def _is_float(v):
  try:
    float(v)
    return True
  except (ValueError, TypeError):
    return False


def read_scores(path):
  """-> (scores, flops, params), each {arch: float}."""
  header, rows = _read_csv(path)
  for col in ('arch', 'score', 'flops', 'params'):
    if col not in header:
      raise ValueError(f'{path} has no {col!r} column: expected '
                       'arch,score,flops,params (as bossnax.main writes)')
  archs = [r['arch'] for r in rows]
  return tuple(dict(zip(archs, _floats(path, rows, c)))
               for c in ('score', 'flops', 'params'))


def truth_column(path, header, rows):
  """The accuracy column: the single name containing 'acc', else the last
  column whose values are all numbers."""
  accs = [c for c in header if 'acc' in c.lower()]
  if len(accs) > 1:
    raise ValueError(f'{path}: several accuracy columns {accs}: pass '
                     '--truth_column=NAME')
  if accs:
    return accs[0]
  numeric = [c for c in header if c != 'arch' and
             all(_is_float(r.get(c)) for r in rows)]
  if not numeric:
    raise ValueError(f'{path}: no accuracy column among {header}: pass '
                     '--truth_column=NAME')
  return numeric[-1]


def read_truth(path, column=None):
  """-> {arch: accuracy}."""
  header, rows = _read_csv(path)
  if 'arch' not in header:
    raise ValueError(f'{path} has no \'arch\' column: the truth file needs '
                     'arch and accuracy columns')
  column = column or truth_column(path, header, rows)
  if column not in header:
    raise ValueError(f'{path} has no column {column!r}: pass one of '
                     f'{header} as --truth_column')
  return dict(zip((r['arch'] for r in rows), _floats(path, rows, column)))


def log_channels(arch):
  """Sum of log channel counts of a 'c0:c1:...' arch, or None."""
  try:
    return sum(math.log(int(c)) for c in arch.split(':'))
  except ValueError:  # not integers, or a zero / negative count
    return None


def correlations(x, y):
  with warnings.catch_warnings():  # constant input: NaN, reported as such
    warnings.simplefilter('ignore')
    if len(x) < 2:
      nan = float('nan')
      return {'kendall': nan, 'spearman': nan, 'pearson': nan, 'n': len(x)}
    return {'kendall': float(stats.kendalltau(x, y)[0]),
            'spearman': float(stats.spearmanr(x, y)[0]),
            'pearson': float(stats.pearsonr(x, y)[0]), 'n': int(len(x))}


def within_decile_spearman(x, y, flops):
  """Mean Spearman rho inside ten equal-count FLOPs groups (sorted by
  FLOPs, np.array_split); groups under 3 archs or constant give no rho."""
  order = np.argsort(flops, kind='stable')
  rhos = []
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    for g in np.array_split(order, 10):
      if len(g) > 2:
        rhos.append(stats.spearmanr(x[g], y[g])[0])
  rhos = [r for r in rhos if np.isfinite(r)]
  return float(np.mean(rhos)) if rhos else float('nan')


def regret(x, y, flops, archs):
  """Per FLOPs budget (quantiles of the matched FLOPs): best true accuracy
  within the budget minus that of the highest-x architecture within it."""
  out = []
  for q in QUANTILES:
    budget = float(np.quantile(flops, q))
    fit = np.flatnonzero(flops <= budget)
    pick = fit[np.argmax(x[fit])]
    out.append({'budget_quantile': q, 'flops_budget': budget,
                'arch': archs[pick], 'regret': float(y[fit].max() - y[pick])})
  return out


def _summary(x, y, flops, archs):
  r = correlations(x, y)
  r['within_decile_spearman'] = within_decile_spearman(x, y, flops)
  r['regret'] = regret(x, y, flops, archs)
  return r


def evaluate(scores, flops, params, truth):
  """scores, flops, params: {arch: float} (higher score = better);
  truth: {arch: accuracy}. Returns the dict `--json` prints."""
  archs = [a for a in truth if a in scores]
  if not archs:
    raise ValueError('no architecture of scores.csv is in the truth file: '
                     'were they made for the same search space?')
  missing = [a for a in archs if a not in flops or a not in params]
  if missing:
    raise ValueError(f'{len(missing)} scored architectures lack flops or '
                     f'params (e.g. {missing[0]}): give both for every arch')
  y = np.array([truth[a] for a in archs], float)
  fl = np.array([flops[a] for a in archs], float)
  result = _summary(np.array([scores[a] for a in archs], float), y, fl, archs)
  result['missing_from_scores'] = len(truth) - len(archs)
  baselines = {'params': np.array([params[a] for a in archs], float),
               'flops': fl}
  logc = [log_channels(a) for a in archs]
  if all(v is not None for v in logc):
    baselines['log_channels'] = np.array(logc)
  result['baselines'] = {k: _summary(b, y, fl, archs)
                         for k, b in baselines.items()}
  return result


def evaluate_files(scores_path, truth_path, column=None):
  return evaluate(*read_scores(scores_path), read_truth(truth_path, column))


def to_json(result):
  """One JSON line; NaN (undefined correlation) becomes null."""
  def clean(v):
    if isinstance(v, float) and not math.isfinite(v):
      return None
    if isinstance(v, dict):
      return {k: clean(w) for k, w in v.items()}
    if isinstance(v, list):
      return [clean(w) for w in v]
    return v
  return json.dumps(clean(result), allow_nan=False)


def format_report(result):
  lines = [f"{'ranking':<14} {'Kendall':>8} {'Spearman':>9} {'Pearson':>8} "
           f"{'rho/decile':>10}  (n={result['n']})"]
  rows = [('scores', result)] + list(result['baselines'].items())
  for name, r in rows:
    lines.append(f"{name:<14} {r['kendall']:>8.3f} {r['spearman']:>9.3f} "
                 f"{r['pearson']:>8.3f} {r['within_decile_spearman']:>10.3f}")
  lines.append('\nregret of the top-scored arch within FLOPs budgets '
               '(best true acc there - its acc):')
  lines.append(f"{'quantile':>8} {'FLOPs budget':>14}  {'arch':<24} "
               f"{'regret':>7}  " + ' '.join(f'{k:>12}' for k in
                                             result['baselines']))
  for i, g in enumerate(result['regret']):
    base = ' '.join(f"{b['regret'][i]['regret']:>12.2f}"
                    for b in result['baselines'].values())
    lines.append(f"{g['budget_quantile']:>8.2f} {g['flops_budget']:>14.6g}  "
                 f"{g['arch']:<24} {g['regret']:>7.2f}  {base}")
  return '\n'.join(lines)


def plot(scores, truth, path, result):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  archs = [a for a in truth if a in scores]
  fig, ax = plt.subplots(figsize=(5, 4))
  ax.scatter([scores[a] for a in archs], [truth[a] for a in archs], s=4,
             alpha=0.5)
  ax.set_xlabel('score (higher = better)')
  ax.set_ylabel('true accuracy')
  ax.set_title(f"Spearman rho {result['spearman']:.3f}, Kendall "
               f"{result['kendall']:.3f} (n={result['n']})")
  fig.tight_layout()
  try:
    fig.savefig(path, dpi=120)
  except OSError as e:
    raise ValueError(f'cannot write the plot {path}: {e}') from None
  finally:
    plt.close(fig)


def main(argv=None):
  p = argparse.ArgumentParser(prog='python -m bossnax.rank',
                              description=__doc__.splitlines()[0])
  p.add_argument('--scores', required=True, help='scores.csv of a run')
  p.add_argument('--truth', required=True, help='CSV with arch, accuracy')
  p.add_argument('--truth_column', default=None,
                 help='accuracy column of --truth (default: auto-detect)')
  p.add_argument('--json', action='store_true', help='print one JSON object')
  p.add_argument('--plot', default='', help='PNG path: score vs accuracy')
  args = p.parse_args(argv)
  try:
    scores, flops, params = read_scores(args.scores)
    truth = read_truth(args.truth, args.truth_column)
    result = evaluate(scores, flops, params, truth)
    if args.plot:
      plot(scores, truth, args.plot, result)
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  if result['missing_from_scores']:
    print(f"warning: {result['missing_from_scores']} architectures of "
          f"{args.truth} are not in {args.scores}: ignored", file=sys.stderr)
  print(to_json(result) if args.json else format_report(result))
  return 0


if __name__ == '__main__':
  sys.exit(main())
