"""Make the embedded dataset: a class-balanced subset of real CIFAR-10.

  python -m bossnax.data.make_embedded --src=../shared/data/cifar10_real_subset.npz

Takes the first 200 training and 50 test images of each class, in the
source's order (2,000 + 500 images, about 7 MB compressed: under the
package's 8 MB budget). The same source gives the same file.
"""

import argparse
import os

import numpy as np

from bossnax.data.sources import EMBEDDED


def balanced(x, y, per_class):
  """The first `per_class` examples of every class, in their source order."""
  idx = [np.flatnonzero(y == c)[:per_class] for c in np.unique(y)]
  short = [c for c, i in enumerate(idx) if len(i) < per_class]
  if short:
    raise ValueError(f'classes {short} have fewer than {per_class} images')
  idx = np.sort(np.concatenate(idx))
  return x[idx], y[idx].astype(np.uint8)


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--src', required=True)
  p.add_argument('--out', default=EMBEDDED)
  p.add_argument('--train_per_class', type=int, default=200)
  p.add_argument('--test_per_class', type=int, default=50)
  args = p.parse_args()
  with np.load(args.src) as d:
    x_train, y_train = balanced(d['x_train'], d['y_train'],
                                args.train_per_class)
    x_test, y_test = balanced(d['x_test'], d['y_test'], args.test_per_class)
  np.savez_compressed(args.out, x_train=x_train, y_train=y_train,
                      x_test=x_test, y_test=y_test)
  print(f'wrote {args.out}: {len(x_train)} train, {len(x_test)} test images, '
        f'{os.path.getsize(args.out) / 2**20:.2f} MiB')


if __name__ == '__main__':
  main()
