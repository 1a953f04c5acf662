"""How well do scores rank architectures? Correlations against ground truth,
next to the trivial size baselines any ranking must beat.

  python -m bossnax.rank --scores=DIR/scores.csv \
      --truth=../shared/benchmarks/nats_sss_cifar10_sample2048.csv [--json] [--plot=fig.png]

scores.csv: arch,score,flops,params (higher score = better). The truth file
has an `arch` column and an accuracy column (the one whose name contains
'acc', or --truth_column). Baselines, computed here: params, flops, and the
sum of log channel counts (for `c0:c1:...` architectures).

Without --truth it prints the sanity report alone: per layer of `c0:c1:...`
architectures, the Spearman correlation of that layer's width with the score
over every scored architecture (higher = wider is better). A layer that
ranks backwards shows without any ground truth; ranking.json holds it too.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import math
import os
import sys

import numpy as np
from scipy import stats

from bossnax.cli import fail

QUANTILES = (0.1, 0.25, 0.5, 0.75, 1.0)


def _read_csv(path):
  if not os.path.isfile(path):
    raise ValueError(f'{path} not found')
  with open(path, newline='') as f:
    rows = list(csv.DictReader(f))
  if not rows:
    raise ValueError(f'{path} has no rows')
  return rows


def read_scores(path):
  rows = _read_csv(path)
  for col in ('arch', 'score', 'flops', 'params'):
    if col not in rows[0]:
      raise ValueError(f'{path} has no {col!r} column: expected '
                       'arch,score,flops,params (as bossnax.main writes)')
  return {r['arch']: (float(r['score']), float(r['flops']),
                      float(r['params'])) for r in rows}


def _read_benchmark_json(path):
  """{arch string: top-1} of a benchmark JSON such as
  ../shared/benchmarks/mbconv_23_archs_imagenet.json."""
  try:
    with open(path) as f:
      rows = json.load(f)['architectures']
    return {'|'.join(''.join(str(int(c)) for c in block)
                     for block in r['encoding']): float(r['imagenet_top1'])
            for r in rows}
  except (OSError, KeyError, TypeError, ValueError) as e:
    raise ValueError(f'{path}: {e} (expected {{"architectures": [{{'
                     '"encoding": [[op, ...], ...], "imagenet_top1": acc}, '
                     '...]}})') from None


def read_truth(path, column=None):
  if str(path).endswith('.json'):
    return _read_benchmark_json(path)
  rows = _read_csv(path)
  cols = list(rows[0])
  if 'arch' not in cols:
    raise ValueError(f'{path} has no arch column')
  if column is None:
    accs = [c for c in cols if 'acc' in c.lower()]
    if len(accs) != 1:
      raise ValueError(f'{path}: cannot tell the accuracy column among '
                       f'{cols}: pass --truth_column')
    column = accs[0]
  if column not in cols:
    raise ValueError(f'{path} has no column {column!r} (columns: {cols})')
  return {r['arch']: float(r[column]) for r in rows}


def log_channels(arch):
  try:
    return sum(math.log(int(c)) for c in arch.split(':'))
  except ValueError:
    return None


@functools.cache
def _mbconv_space():
  from bossnax.spaces.mbconv import MBConvSpace
  return MBConvSpace()


def log_hidden(arch):
  """Sum of log hidden widths of an MBConv architecture string (BossNAS
  layout), the channel-count proxy of that space; None for other strings."""
  if '|' not in arch:
    return None
  from bossnax.spaces import mbconv_layouts as L
  space = _mbconv_space()
  try:
    ops = space.ops(space.from_string(arch))
  except ValueError:
    return None
  return sum(math.log(L.make_divisible(cin * op.expansion))
             for (_, _, cin, _, _), op in zip(L.searched_layers(space.lay),
                                              ops))


def layer_report(scores):
  """{'c0': rho, ...}: per position of `c0:c1:...` architectures, the
  Spearman correlation of its width with the score; None when the
  architectures are not of that form. `scores` maps arch -> (score, ...)."""
  archs = list(scores)
  try:
    widths = np.array([[float(v) for v in a.split(':')] for a in archs])
  except ValueError:
    return None
  if widths.ndim != 2 or len(archs) < 3:
    return None
  score = np.array([scores[a][0] for a in archs])
  out = {}
  for i in range(widths.shape[1]):
    col = widths[:, i]
    rho = (stats.spearmanr(col, score).correlation
           if np.ptp(col) > 0 and np.ptp(score) > 0 else float('nan'))
    out[f'c{i}'] = float(rho)
  return out


def format_layer_report(report):
  return ('per layer, Spearman of width against score over every scored '
          'architecture (higher = wider is better): ' +
          '  '.join(f'{k} {v:+.2f}' for k, v in report.items()))


def correlations(x, y):
  return {'kendall': float(stats.kendalltau(x, y)[0]),
          'spearman': float(stats.spearmanr(x, y)[0]),
          'pearson': float(stats.pearsonr(x, y)[0]), 'n': int(len(x))}


def within_decile_spearman(x, y, flops):
  """Mean Spearman rho inside the ten equal-count FLOPs groups: what a
  ranking knows beyond size."""
  order = np.argsort(flops, kind='stable')
  rhos = [stats.spearmanr(x[g], y[g])[0] for g in np.array_split(order, 10)
          if len(g) > 2]
  rhos = [r for r in rhos if np.isfinite(r)]
  return float(np.mean(rhos)) if rhos else float('nan')


def top_decile_spearman(x, y):
  """Spearman rho among the truly best tenth (at least 3): does the
  ranking order the good region (GreedyNAS's claim), not only the whole
  space?"""
  top = np.argsort(-np.asarray(y), kind='stable')[:max(3, len(y) // 10)]
  rho = stats.spearmanr(np.asarray(x)[top], np.asarray(y)[top])[0]
  return float(rho) if np.isfinite(rho) else float('nan')


def regret(x, y, flops, archs):
  """Best true accuracy within each FLOPs budget minus the accuracy of the
  architecture the scores pick within it."""
  out = []
  for q in QUANTILES:
    budget = float(np.quantile(flops, q))
    fit = np.where(flops <= budget)[0]
    pick = fit[np.argmax(x[fit])]
    out.append({'budget_quantile': q, 'flops_budget': budget,
                'arch': archs[pick], 'regret': float(y[fit].max() - y[pick])})
  return out


def evaluate(scores, truth):
  """scores: {arch: (score, flops, params)}; truth: {arch: accuracy}."""
  archs = [a for a in truth if a in scores]
  if not archs:
    raise ValueError('no architecture of the scores is in the truth file: '
                     'were they made for the same search space?')
  if len(archs) < 3:
    raise ValueError(f'only {len(archs)} of the {len(scores)} scored '
                     'architectures are in the truth file: correlations need '
                     '3 or more (a search that evaluates a few: add '
                     'search.archs_file=TRUTH.csv to score its architectures '
                     'too)')
  y = np.array([truth[a] for a in archs])
  s = np.array([scores[a][0] for a in archs])
  flops = np.array([scores[a][1] for a in archs])
  params = np.array([scores[a][2] for a in archs])
  result = correlations(s, y)
  result['within_decile_spearman'] = within_decile_spearman(s, y, flops)
  result['top_decile_spearman'] = top_decile_spearman(s, y)
  result['regret'] = regret(s, y, flops, archs)
  result['missing_from_scores'] = len(truth) - len(archs)
  baselines = {'params': params, 'flops': flops}
  for name, fn in (('log_channels', log_channels),
                   ('log_hidden', log_hidden)):
    values = [fn(a) for a in archs]
    if all(v is not None for v in values):
      baselines[name] = np.array(values)
  result['baselines'] = {}
  for name, b in baselines.items():
    r = correlations(b, y)
    r['within_decile_spearman'] = within_decile_spearman(b, y, flops)
    r['top_decile_spearman'] = top_decile_spearman(b, y)
    r['regret'] = regret(b, y, flops, archs)
    result['baselines'][name] = r
  return result


def evaluate_files(scores_path, truth_path, column=None):
  return evaluate(read_scores(scores_path), read_truth(truth_path, column))


def format_report(result):
  lines = [f"{'ranking':<14} {'Kendall':>8} {'Spearman':>9} {'Pearson':>8} "
           f"{'rho/decile':>10} {'rho/top10%':>10}  (n={result['n']})"]
  rows = [('scores', result)] + list(result['baselines'].items())
  for name, r in rows:
    lines.append(f"{name:<14} {r['kendall']:>8.3f} {r['spearman']:>9.3f} "
                 f"{r['pearson']:>8.3f} {r['within_decile_spearman']:>10.3f} "
                 f"{r['top_decile_spearman']:>10.3f}")
  lines.append('regret (best true acc within the FLOPs budget - acc of the '
               'pick), per budget quantile:')
  for name, r in rows:
    lines.append(f"  {name:<12} " + '  '.join(
        f"q{g['budget_quantile']:.2f}:{g['regret']:.2f}" for g in r['regret']))
  return '\n'.join(lines)


def scatter(ax, x, y, title, xlabel='bossnax score (higher = better)'):
  """One ranking against the truth on `ax` (the paper's Fig. 6 and 8)."""
  ax.scatter(x, y, s=4, alpha=0.5)
  ax.set_xlabel(xlabel)
  ax.set_ylabel('true accuracy (%)')
  ax.set_title(title, fontsize=9)


def title(name, result):
  return (f"{name}\nSpearman {result['spearman']:.3f}, Kendall "
          f"{result['kendall']:.3f} (n={result['n']})")


def plot(scores, truth, path, result):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  archs = [a for a in truth if a in scores]
  fig, ax = plt.subplots(figsize=(5, 4))
  scatter(ax, [scores[a][0] for a in archs], [truth[a] for a in archs],
          title('scores', result))
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv=None):
  p = argparse.ArgumentParser(prog='python -m bossnax.rank',
                              description=__doc__.splitlines()[0])
  p.add_argument('--scores', required=True)
  p.add_argument('--truth', default='',
                 help='ground truth CSV (arch,acc) or benchmark JSON (the '
                 'MBConv 23); without it only the per-layer report')
  p.add_argument('--truth_column', default=None)
  p.add_argument('--json', action='store_true')
  p.add_argument('--plot', default='')
  args = p.parse_args(argv)
  try:
    scores = read_scores(args.scores)
    layers = layer_report(scores)
    if not args.truth:
      if layers is None:
        raise ValueError(f'{args.scores}: no c0:c1:... architectures for '
                         'the per-layer report; pass --truth=FILE')
      print(json.dumps({'per_layer_width_spearman': layers}) if args.json
            else format_layer_report(layers))
      return 0
    truth = read_truth(args.truth, args.truth_column)
    result = evaluate(scores, truth)
  except ValueError as e:
    return fail(e)
  if layers is not None:
    result['per_layer_width_spearman'] = layers
  if args.plot:
    plot(scores, truth, args.plot, result)
  if args.json:
    print(json.dumps(result))
  else:
    print(format_report(result))
    if layers is not None:
      print(format_layer_report(layers))
  return 0


if __name__ == '__main__':
  sys.exit(main())
