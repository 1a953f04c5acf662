"""Deterministic per-host batches: the order is a pure function of
(seed, epoch), so any step can be produced again (resume without iterator
state), and each process takes its contiguous slice of the global batch.

Repeated augmentation (`repeats` r > 1, DeiT's RASampler, `train.
repeated_aug`): the epoch's order with every image r times in a row, cut
into global batches as DeiT's sampler cuts it over its processes (a batch
not divisible by r splits an image's copies over two steps); each copy gets
its own augmentation (the device's per-example keys; host crops drawn per
copy). An epoch keeps its number of steps, so it sees 1/r of the images, r
times each. Where the copies sit in the batch does not change the gradient
(it is over the global batch); with batch norm and `train.accum_steps` > 1
each micro-batch's statistics see an image's copies together (DeiT's
sampler spreads them over its processes): the recipes that repeat
(AutoFormer's ViT, the retraining) do not accumulate.

Sources that decode on the host (folders, tfds ImageNet) load their batches
in `workers` grain worker processes, each making whole batches, read ahead
in step order; the batch of a step is the same with any number of workers
(random host crops depend on the step, not on the worker)."""

from __future__ import annotations

import concurrent.futures

import numpy as np


class Batches:

  def __init__(self, source, split, global_batch, seed, process_index=0,
               process_count=1, workers=0, repeats=1):
    n = source.num_examples(split)
    if global_batch % process_count:
      raise ValueError(f'batch {global_batch} does not split over '
                       f'{process_count} processes: use a multiple')
    if repeats < 1:
      raise ValueError(f'train.repeated_aug={repeats}: give 1 (off) or '
                       'more (DeiT: 3)')
    if global_batch > n:
      raise ValueError(f'batch {global_batch} is larger than the {n} '
                       f'{split} images: lower --config.train.batch_size')
    self.source, self.split, self.seed = source, split, seed
    self.global_batch, self.repeats = global_batch, int(repeats)
    self.per_process = global_batch // process_count
    self.offset = process_index * self.per_process
    self.steps_per_epoch = n // global_batch  # the remainder is dropped
    self._perm = (None, None)
    self.workers = workers
    self._stream = None  # (next step, iterator) of the grain workers

  def _order(self, step):
    """(the epoch's order, the step's index within the epoch)."""
    epoch, i = divmod(step, self.steps_per_epoch)
    if self._perm[0] != epoch:
      rng = np.random.default_rng((self.seed, epoch))
      self._perm = (epoch, rng.permutation(self.source.num_examples(
          self.split)))
    return self._perm[1], i

  def copies(self, step):
    """(indices, copy number) of this process's slice of `step`'s batch."""
    order, i = self._order(step)
    at = i * self.global_batch + self.offset + np.arange(self.per_process)
    return order[at // self.repeats], at % self.repeats

  def indices(self, step):
    return self.copies(step)[0]

  def load(self, step):
    """The batch of `step`, made here (host crops drawn per copy)."""
    if self.repeats == 1:
      x, y = self.source.get(self.split, self.indices(step), draw=step)
      return {'image': x, 'label': y}
    idx, copy = self.copies(step)
    parts = [(np.flatnonzero(copy == c), self.source.get(
        self.split, idx[copy == c], draw=step * self.repeats + c))
             for c in np.unique(copy)]
    x = np.empty((len(idx), *parts[0][1][0].shape[1:]), parts[0][1][0].dtype)
    y = np.empty((len(idx), *parts[0][1][1].shape[1:]), parts[0][1][1].dtype)
    for where, (xc, yc) in parts:
      x[where], y[where] = xc, yc
    return {'image': x, 'label': y}

  def get_batch(self, step):
    if not self.workers:
      return self.load(step)
    if self._stream is None or self._stream[0] != step:
      self.close()
      self._stream = (step, iter(self._grain_stream(step)))
    batch = next(self._stream[1])
    self._stream = (step + 1, self._stream[1])
    return batch

  def _grain_stream(self, start):
    import grain
    from absl import flags
    if not flags.FLAGS.is_parsed():  # grain reads its absl flags' defaults
      flags.FLAGS.mark_as_parsed()  # (parsed already under absl.app)
    # One element per step from `start` on (lazily: the workers only run
    # ahead by their buffers); each worker makes whole batches.
    steps = grain.MapDataset.range(start, start + 10**12).map(self.load)
    return steps.to_iter_dataset(grain.ReadOptions(num_threads=0)).mp_prefetch(
        grain.MultiprocessingOptions(num_workers=self.workers,
                                     per_worker_buffer_size=2))

  def close(self):
    """Stop the worker processes (they start again on the next batch)."""
    if self._stream is not None:
      getattr(self._stream[1], 'close', lambda: None)()
      self._stream = None

  def __getstate__(self):  # what a worker process receives
    state = dict(self.__dict__)
    state['_stream'] = None
    return state


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
