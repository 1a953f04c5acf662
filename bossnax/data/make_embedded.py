"""Make the embedded dataset: a class-balanced subset of real CIFAR-10.

  python -m bossnax.data.make_embedded --src=../shared/data/cifar10_real_subset.npz

Takes the first 200 training and 50 test images of each class (2,000 + 500
images, about 7 MB compressed: under the package's 8 MB budget).
"""

import argparse

import numpy as np

from bossnax.data.sources import EMBEDDED


def balanced(x, y, per_class):
  idx = np.sort(np.concatenate(
      [np.where(y == c)[0][:per_class] for c in range(10)]))
  return x[idx], y[idx].astype(np.uint8)


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--src', required=True)
  p.add_argument('--out', default=EMBEDDED)
  args = p.parse_args()
  with np.load(args.src) as d:
    x_train, y_train = balanced(d['x_train'], d['y_train'], 200)
    x_test, y_test = balanced(d['x_test'], d['y_test'], 50)
  np.savez_compressed(args.out, x_train=x_train, y_train=y_train,
                      x_test=x_test, y_test=y_test)
  print(f'wrote {args.out}: {len(x_train)} train, {len(x_test)} test images')


if __name__ == '__main__':
  main()
