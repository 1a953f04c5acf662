"""Width-switchable layers: batch norm kept per width, as slimmable networks do.

Every channel choice of a layer uses the widest weights with a channel mask
(inactive channels are exactly zero). Batch norm is the one layer whose state
cannot be shared across widths: a 16-channel path and a 64-channel path see
different statistics in their first 16 channels. So a `SwitchableBatchNorm`
holds one row of scale, bias and running statistics per width choice, and the
path's width index (a traced int) picks the row.

Batch-norm modes, passed as a static string:
  'train'     batch statistics; running statistics updated (momentum).
  'frozen'    batch statistics; running statistics untouched (finished blocks
              while a later block trains).
  'calibrate' batch statistics; running statistics replaced by them (BN
              recalibration of one path on one fixed batch before scoring).
  'eval'      running statistics.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

MODES = ('train', 'frozen', 'calibrate', 'eval')


def channel_mask(width: jax.Array, max_width: int, dtype=jnp.float32):
  """[max_width] mask with ones on the first `width` channels."""
  return (jnp.arange(max_width) < width).astype(dtype)


class SwitchableBatchNorm(nn.Module):
  """Batch norm over the last axis with one parameter/statistics row per width.

  `num_widths=1` is a plain batch norm (used by the heads).
  """
  num_widths: int
  features: int
  momentum: float = 0.9  # PyTorch's momentum 0.1
  epsilon: float = 1e-5
  scale_init: float = 1.0

  @nn.compact
  def __call__(self, x, index, mode: str, mask=None, active=None):
    """`active` (traced bool) marks whether this branch is used by the path;
    an inactive branch leaves its running statistics alone."""
    if mode not in MODES:
      raise ValueError(f'batch-norm mode {mode!r}: use one of {MODES}')
    shape = (self.num_widths, self.features)
    scale = self.param('scale', nn.initializers.constant(self.scale_init),
                       shape)
    bias = self.param('bias', nn.initializers.zeros, shape)
    ra_mean = self.variable('batch_stats', 'mean', jnp.zeros, shape)
    ra_var = self.variable('batch_stats', 'var', jnp.ones, shape)
    # Which rows this forward used: lets a vectorised step merge the running
    # statistics of several paths exactly (see `merge_path_stats`).
    hits = self.variable('batch_stats', 'hits', jnp.zeros, (self.num_widths,))

    axes = tuple(range(x.ndim - 1))
    xf = x.astype(jnp.float32)
    if mode == 'eval':
      mean, var = ra_mean.value[index], ra_var.value[index]
    else:
      mean = xf.mean(axes)
      var = jnp.square(xf - mean).mean(axes)
      if not self.is_initializing() and mode in ('train', 'calibrate'):
        onehot = jax.nn.one_hot(index, self.num_widths)
        if mode == 'train':
          new_mean = self.momentum * ra_mean.value[index] + (
              1 - self.momentum) * mean
          new_var = self.momentum * ra_var.value[index] + (
              1 - self.momentum) * var
        else:
          new_mean, new_var = mean, var
        if active is not None:
          onehot = onehot * active
        sel = onehot[:, None]
        if mask is not None:
          # A row's masked channels are never used by its width: leave them,
          # so a narrowed supernet (NATSSpace.narrow) keeps the same state.
          sel = sel * mask.astype(jnp.float32)[None]
        ra_mean.value = ra_mean.value * (1 - sel) + sel * new_mean
        ra_var.value = ra_var.value * (1 - sel) + sel * new_var
        hits.value = onehot
    y = (xf - mean) * jax.lax.rsqrt(var + self.epsilon)
    y = y * scale[index] + bias[index]
    if mask is not None:
      y = y * mask
    return y.astype(x.dtype)


def merge_path_stats(old, stacked):
  """Merge running statistics updated by several paths in one step.

  `stacked` holds, for every leaf of `old`, the copies returned by P paths run
  side by side (leading axis P). For each batch-norm row, the merged statistic
  is the old value moved by the mean of the updates of the paths that used the
  row (rows no path used stay as they were). With one path this is exactly
  that path's update.
  """
  if isinstance(old, dict) or hasattr(old, 'items'):
    if 'hits' in old:
      hits = stacked['hits']  # [P, W]
      count = hits.sum(0)
      weight = hits / jnp.maximum(count, 1.0)  # [P, W]
      out = {}
      for name, value in old.items():
        if name == 'hits':
          out[name] = jnp.zeros_like(value)
        else:
          delta = stacked[name] - value[None]
          out[name] = value + jnp.einsum('pw,pw...->w...', weight, delta)
      return out
    return {k: merge_path_stats(v, stacked[k]) for k, v in old.items()}
  raise TypeError(f'unexpected batch_stats leaf {type(old)}')
