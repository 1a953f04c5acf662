"""Deterministic per-host batches: the order is a pure function of
(seed, epoch), so any step can be produced again (resume without iterator
state), and each process takes its contiguous slice of the global batch."""

from __future__ import annotations

import concurrent.futures

import numpy as np


class Batches:

  def __init__(self, source, split, global_batch, seed, process_index=0,
               process_count=1):
    n = source.num_examples(split)
    if global_batch % process_count:
      raise ValueError(f'batch {global_batch} does not split over '
                       f'{process_count} processes: use a multiple')
    if global_batch > n:
      raise ValueError(f'batch {global_batch} is larger than the {n} '
                       f'{split} images: lower --config.train.batch_size')
    self.source, self.split, self.seed = source, split, seed
    self.global_batch = global_batch
    self.per_process = global_batch // process_count
    self.offset = process_index * self.per_process
    self.steps_per_epoch = n // global_batch  # the remainder is dropped
    self._perm = (None, None)

  def indices(self, step):
    epoch, i = divmod(step, self.steps_per_epoch)
    if self._perm[0] != epoch:
      rng = np.random.default_rng((self.seed, epoch))
      self._perm = (epoch, rng.permutation(self.source.num_examples(
          self.split)))
    start = i * self.global_batch + self.offset
    return self._perm[1][start:start + self.per_process]

  def get_batch(self, step):
    x, y = self.source.get(self.split, self.indices(step))
    return {'image': x, 'label': y}


def prefetch(load, steps, size=2):
  """Yield (step, load(step)) while a thread loads the next `size` steps,
  so the host prepares batches while the accelerator computes."""
  steps = list(steps)
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    pending = [pool.submit(load, s) for s in steps[:size]]
    for i, s in enumerate(steps):
      result = pending.pop(0).result()
      if i + size < len(steps):
        pending.append(pool.submit(load, steps[i + size]))
      yield s, result
