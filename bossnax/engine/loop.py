"""The training loop shared by the search run and retraining: prefetch the
next batches, step, log metrics (images/s included) and progress, save a
checkpoint every `checkpoint_every` steps."""

from __future__ import annotations

import contextlib
import time

import jax

from bossnax.data.pipeline import prefetch
from bossnax.metrics import Progress


def train_steps(step, state, load, start, total, *, writer, desc,
                log_every, checkpoint_every=0, save=None, global_step=None,
                tags=None, after_step=None, guard=None, count=None,
                until=None, should_stop=None):
  """Run steps start..total-1; returns the state.

  step(s, state, batch) -> (state, metrics); load(s) -> batch; count(batch)
  -> its number of images (default: the leading axis of its first array); save(s + 1, state) every
  `checkpoint_every` steps before the last; after_step(s + 1, state) after
  each step (evaluation); global_step(s + 1) numbers the metric rows;
  guard() a context manager around each step (error rewording); `until`
  stops before that step as if the job were killed there (tests);
  should_stop(s + 1) -> True ends the loop after step s (early stopping:
  the caller checkpoints and records why).
  """
  global_step = global_step or (lambda s: s)
  progress = Progress(total, desc, start_step=start)
  tick, seen = time.time(), 0
  stop = total if until is None else max(start, min(until, total))
  for s, batch in prefetch(load, range(start, stop)):
    with (guard() if guard else contextlib.nullcontext()):
      state, metrics = step(s, state, batch)
    seen += (count(batch) if count else jax.tree.leaves(batch)[0].shape[0])
    if (s + 1) % log_every == 0 or s + 1 == total:
      metrics = jax.device_get(metrics)
      metrics['images_per_s'] = seen / max(time.time() - tick, 1e-9)
      tick, seen = time.time(), 0
      if writer is not None:
        writer.write(global_step(s + 1), metrics, **(tags or {}))
      progress.update(s + 1, loss=float(metrics['loss']))
    if after_step is not None:
      after_step(s + 1, state)
    if should_stop is not None and should_stop(s + 1):
      if writer is not None and (s + 1) % log_every and s + 1 != total:
        writer.write(global_step(s + 1), jax.device_get(metrics),
                     **(tags or {}))  # the last step's figures, logged
      progress.update(s + 1, loss=float(jax.device_get(metrics)['loss']))
      break
    if checkpoint_every and (s + 1) % checkpoint_every == 0 and s + 1 < total:
      save(s + 1, state)
  return state
