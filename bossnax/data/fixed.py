"""Fixed evaluation batches: every example counts once, one compiled shape.

The last batch is padded with copies of the last example and weight 0, and
each process takes its contiguous share of every global batch.
"""

from __future__ import annotations

import jax
import numpy as np


def padded_indices(n: int, batch: int):
  """(indices, weights) of n examples padded to a multiple of `batch`."""
  pad = (-n) % batch
  idx = np.concatenate([np.arange(n), np.full(pad, n - 1)]).astype(np.int64)
  weights = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
  return idx, weights


def process_share(a: np.ndarray, batch: int):
  """Rows of this process in every global batch of `batch` rows of `a`
  (len(a) a multiple of `batch`)."""
  pc, pi = jax.process_count(), jax.process_index()
  per = batch // pc
  return a.reshape(-1, pc, per, *a.shape[1:])[:, pi].reshape(-1, *a.shape[1:])
