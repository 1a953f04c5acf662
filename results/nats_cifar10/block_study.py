"""What each block's scores add: split a run's scores.csv into its per-block
tables and rank with other block weights (lambda), without a GPU.

  python results/nats_cifar10/block_study.py results/nats_cifar10/scores.csv \
      ../shared/benchmarks/nats_sss_cifar10_sample2048.csv

With search.top_n=1 every architecture takes block k's loss from one table,
so score(c0..c4) = -(L0[c0,c1] + L1[c2,c3] + L2[c4]) exactly (official CIFAR-10
split). The tables are recovered by least squares (the printed residual shows
the split is exact); then Spearman/Kendall are printed for each block alone,
each block left out, and a few lambda vectors.
"""

import sys

import numpy as np
from scipy import stats

W = (8, 16, 24, 32, 40, 48, 56, 64)


def load(scores_csv, truth_csv):
  s = np.genfromtxt(scores_csv, delimiter=',', names=True, dtype=None,
                    encoding=None)
  t = np.genfromtxt(truth_csv, delimiter=',', names=True, dtype=None,
                    encoding=None)
  acc_col = [n for n in t.dtype.names if n not in ('index', 'arch')][0]
  chans = np.array([[W.index(int(c)) for c in a.split(':')] for a in s['arch']])
  truth = dict(zip(t['arch'], t[acc_col]))
  return s['arch'], s['score'], chans, truth


def split_blocks(score, chans):
  """Least-squares tables A[c0,c1], B[c2,c3], C[c4] with score = -(A+B+C)."""
  n = len(W)
  cols = [chans[:, 0] * n + chans[:, 1], 64 + chans[:, 2] * n + chans[:, 3],
          128 + chans[:, 4]]
  X = np.zeros((len(score), 136))
  for c in cols:
    X[np.arange(len(score)), c] = 1.0
  coef, *_ = np.linalg.lstsq(X, -score, rcond=None)
  resid = np.abs(X @ coef + score).max()
  per_block = np.stack([coef[c] for c in cols], 1)  # [N, 3] block losses
  return per_block, resid


def main(scores_csv, truth_csv):
  archs, score, chans, truth = load(scores_csv, truth_csv)
  per_block, resid = split_blocks(score, chans)
  print(f'per-block split of {len(archs)} scores: max residual {resid:.2e}')
  keep = np.array([a in truth for a in archs])
  acc = np.array([truth[a] for a in archs[keep]])
  L = per_block[keep]
  print(f'{"ranking":<28} {"Kendall":>8} {"Spearman":>9}  (n={keep.sum()})')
  rows = [('all blocks (the run)', (1, 1, 1))]
  rows += [(f'block {k} alone', tuple(float(i == k) for i in range(3)))
           for k in range(3)]
  rows += [(f'without block {k}', tuple(float(i != k) for i in range(3)))
           for k in range(3)]
  rows += [(f'lambda {lam}', lam) for lam in ((1, 2, 4), (4, 2, 1), (1, 1, 2))]
  for name, lam in rows:
    s = -(L * np.asarray(lam)).sum(1)
    print(f'{name:<28} {stats.kendalltau(s, acc)[0]:>8.3f} '
          f'{stats.spearmanr(s, acc)[0]:>9.3f}')


if __name__ == '__main__':
  main(*sys.argv[1:3])
