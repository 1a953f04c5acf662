"""Deterministic per-host batches: the order is a pure function of
(seed, epoch), so any step can be produced again (resume without iterator
state), and each process takes its contiguous slice of the global batch."""

from __future__ import annotations

import collections
import concurrent.futures
import itertools

import numpy as np


class Batches:
  """`get_batch(step)` -> {'image': uint8 [B, H, W, C], 'label': int32 [B]}
  with B = global_batch // process_count, this process's part of the step.

  drop_remainder=True drops the last partial batch of each epoch. With False
  it is filled up with the epoch's first images (static shapes) and the
  batch gains 'mask' (bool [B], False on the filler) for exact evaluation.
  """

  def __init__(self, source, split, global_batch, seed, process_index=0,
               process_count=1, drop_remainder=True):
    n = source.num_examples(split)
    if global_batch <= 0 or global_batch % process_count:
      raise ValueError(f'batch {global_batch} does not split over '
                       f'{process_count} processes: use a multiple')
    if global_batch > n:
      raise ValueError(f'batch {global_batch} is larger than the {n} '
                       f'{split} images: lower --config.train.batch_size')
    if not 0 <= process_index < process_count:
      raise ValueError(f'process_index {process_index} is not in '
                       f'[0, {process_count})')
    self.source, self.split, self.seed = source, split, seed
    self.num_examples = n
    self.global_batch = global_batch
    self.per_process = global_batch // process_count
    self.offset = process_index * self.per_process
    self.drop_remainder = drop_remainder
    self.steps_per_epoch = (n // global_batch if drop_remainder
                            else -(-n // global_batch))
    self._perm = (None, None)  # one epoch's order, reused by its steps

  def order(self, epoch):
    cached = self._perm  # one read: safe when a prefetch thread also calls
    if cached[0] != epoch:
      rng = np.random.default_rng((self.seed, epoch))
      cached = self._perm = (epoch, rng.permutation(self.num_examples))
    return cached[1]

  def positions(self, step):
    """Positions in the epoch's order that this process reads at `step`."""
    i = step % self.steps_per_epoch
    start = i * self.global_batch + self.offset
    return np.arange(start, start + self.per_process)

  def indices(self, step):
    perm = self.order(step // self.steps_per_epoch)
    return perm[self.positions(step) % self.num_examples]

  def get_batch(self, step):
    x, y = self.source.get(self.split, self.indices(step))
    batch = {'image': x, 'label': y}
    if not self.drop_remainder:
      batch['mask'] = self.positions(step) < self.num_examples
    return batch


def prefetch(load, steps, size=2):
  """Yield (step, load(step)) for each step while a thread already loads the
  next `size` steps, so the host prepares batches while the accelerator
  computes. `steps` may be endless; errors of `load` surface here."""
  steps = iter(steps)
  with concurrent.futures.ThreadPoolExecutor(
      1, thread_name_prefix='bossnax-prefetch') as pool:
    pending = collections.deque(
        (s, pool.submit(load, s)) for s in itertools.islice(steps, size))
    try:
      while pending:
        s, future = pending.popleft()
        for nxt in itertools.islice(steps, 1):
          pending.append((nxt, pool.submit(load, nxt)))
        yield s, future.result()
    finally:  # stopped early: skip the loads not yet started
      for _, future in pending:
        future.cancel()
