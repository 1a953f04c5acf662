"""Validation splits: the search's validation images taken out of the
training set (held out per class or as a fraction, as the paper does on
ImageNet) or NATS-Bench's own splits. The test split stays for the final
report.

A split source maps each of its splits to (split of the base source,
indices into it); the base is never copied, so lazy sources (folders, tfds
ImageNet) stay lazy. Which images are held out is a pure function of the
seed, the same on every host; each host then reads its share of every batch
(data/pipeline.py, data/fixed.py).

NATS-Bench splits (bossnax/data/splits/nats.npz, bit masks packed from
cifar-split.txt and cifar100-test-split.txt of NAS-Bench-201's configs):
CIFAR-10 trains on 25,000 of the training images and validates on the other
25,000; CIFAR-100 trains on all 50,000 and validates on 5,000 of the test
images (its `xvalid`), testing on the other 5,000 (`xtest`).
"""

from __future__ import annotations

import os

import numpy as np

NATS_FILE = os.path.join(os.path.dirname(__file__), 'splits', 'nats.npz')


class SplitSource:
  """A source whose splits are index subsets of another source's."""

  def __init__(self, base, splits):
    self.base, self._splits = base, splits
    self.name, self.num_classes = base.name, base.num_classes
    self.image_shape = base.image_shape

  @property
  def splits(self):
    return tuple(self._splits)

  def num_examples(self, split):
    return len(self._splits[split][1])

  def get(self, split, indices, draw=None):
    base_split, idx = self._splits[split]
    picked = idx[np.asarray(indices, np.int64)]
    if draw is None:
      return self.base.get(base_split, picked)
    return self.base.get(base_split, picked, draw=draw)

  def labels(self, split):
    base_split, idx = self._splits[split]
    return self.base.labels(base_split)[idx]

  def __getattr__(self, name):  # host transforms, workers, ... of the base
    if name.startswith('_') or name == 'base':
      raise AttributeError(name)
    return getattr(self.base, name)


def holdout(source, per_class: int = 0, fraction: float = 0.0,
            seed: int = 0):
  """`source` with a 'val' split held out of 'train': `per_class` images
  of every class (needs the source's labels) or a `fraction` of all."""
  n = source.num_examples('train')
  rng = np.random.default_rng([seed, 0x5EED])
  if per_class:
    if not hasattr(source, 'labels'):
      raise ValueError(f'data.holdout_per_class needs the labels of every '
                       f'training image, which the {source.name} source '
                       'cannot list cheaply: use --config.data.'
                       'holdout_fraction instead')
    y = np.asarray(source.labels('train'))
    order = np.argsort(y, kind='stable')  # members of each class, in order
    classes, starts = np.unique(y[order], return_index=True)
    val = []
    for c, members in zip(classes, np.split(order, starts[1:])):
      if len(members) <= per_class:
        raise ValueError(f'class {c} has {len(members)} training images: '
                         f'data.holdout_per_class={per_class} would leave '
                         'none to train on; lower it')
      val.append(rng.choice(members, per_class, replace=False))
    val = np.sort(np.concatenate(val))
  else:
    if not 0 < fraction < 1:
      raise ValueError(f'data.holdout_fraction={fraction}: use a number '
                       'between 0 and 1')
    val = np.sort(rng.choice(n, int(round(n * fraction)), replace=False))
  train = np.setdiff1d(np.arange(n), val)
  return SplitSource(source, {
      'train': ('train', train), 'val': ('train', val),
      'test': ('test', np.arange(source.num_examples('test')))})


def nats_split(source, dataset: str):
  """`source` (in the official archive order) with NATS-Bench's splits."""
  with np.load(NATS_FILE) as f:
    masks = {k: np.unpackbits(f[k]).astype(bool) for k in f.files}
  n_train, n_test = source.num_examples('train'), source.num_examples('test')
  if dataset == 'cifar10':
    valid = masks['cifar10_valid']
    if n_train != len(valid):
      raise ValueError(f'data.nats_split needs the full CIFAR-10 training '
                       f'set in its official order ({len(valid)} images), '
                       f'not {n_train}: use --config.data.source=archive or '
                       'tfds')
    splits = {'train': ('train', np.flatnonzero(~valid)),
              'val': ('train', np.flatnonzero(valid)),
              'test': ('test', np.arange(n_test))}
  elif dataset == 'cifar100':
    xvalid = masks['cifar100_xvalid']
    if n_test != len(xvalid):
      raise ValueError(f'data.nats_split needs the full CIFAR-100 test set '
                       f'in its official order ({len(xvalid)} images), not '
                       f'{n_test}: use --config.data.source=archive or tfds')
    splits = {'train': ('train', np.arange(n_train)),
              'val': ('test', np.flatnonzero(xvalid)),
              'test': ('test', np.flatnonzero(~xvalid))}
  else:
    raise ValueError(f'data.nats_split is defined for cifar10 and cifar100, '
                     f'not {dataset!r}')
  return SplitSource(source, splits)
