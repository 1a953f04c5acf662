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

With batch statistics the layer runs `batch_norm`: one pass over the input
for both statistics and a closed-form backward pass. BN is memory-bound and
a large share of a NATS step's time on a GPU (docs/performance.md); the
textbook formula under autodiff reads the activations several more times.
"""

from __future__ import annotations

import functools
import os

import flax.linen as nn
import jax
import jax.numpy as jnp

MODES = ('train', 'frozen', 'calibrate', 'eval')


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def batch_norm(x, scale, bias, shift, epsilon):
  """Normalise `x` over all but its last axis with its batch statistics.

  Returns (y, mean, var) in float32 whatever the dtype of `x`. One pass
  computes both moments about `shift` (the running mean: a nearby centre
  keeps E[d^2] - E[d]^2 free of cancellation); `shift` and `epsilon` get
  no gradient, and neither do the returned statistics (they only feed the
  running averages).
  """
  return _bn_forward(x, scale, bias, shift, epsilon)[0]


def _bn_forward(x, scale, bias, shift, epsilon):
  axes = tuple(range(x.ndim - 1))
  xin, x = x, x.astype(jnp.float32)
  d = x - shift
  dmean = d.mean(axes)
  var = jnp.maximum(jnp.square(d).mean(axes) - jnp.square(dmean), 0.0)
  mean = dmean + shift
  rstd = jax.lax.rsqrt(var + epsilon)
  y = (x - mean) * (rstd * scale) + bias
  # keep the input in its own dtype (bfloat16 halves this residual)
  return (y, mean, var), (xin, mean, rstd, scale)


def _bn_backward(epsilon, res, cotangents):
  del epsilon
  xin, mean, rstd, scale = res
  dy = cotangents[0]  # the statistics' cotangents are ignored (see above)
  axes = tuple(range(xin.ndim - 1))
  n = xin.size // xin.shape[-1]
  xhat = (xin.astype(jnp.float32) - mean) * rstd
  dbias = dy.sum(axes)
  dscale = (dy * xhat).sum(axes)
  dx = (scale * rstd / n) * (n * dy - dbias - xhat * dscale)
  # Cotangents in the inputs' dtypes (bf16 parameters under bf16 compute):
  # a branch of lax.cond / switch must return the same types as the others.
  return (dx.astype(xin.dtype), dscale.astype(scale.dtype),
          dbias.astype(scale.dtype), jnp.zeros_like(mean))


batch_norm.defvjp(_bn_forward, _bn_backward)


def textbook_batch_norm(x, scale, bias, shift, epsilon):
  """The same (y, mean, var) by the textbook formula under autodiff (two
  passes for the statistics, autodiff's backward): the baseline the GPU
  benchmarks compare `batch_norm` with (BOSSNAX_BN=textbook)."""
  del shift
  axes = tuple(range(x.ndim - 1))
  x = x.astype(jnp.float32)
  mean = x.mean(axes)
  var = jnp.square(x - mean).mean(axes)
  y = (x - mean) * jax.lax.rsqrt(var + epsilon) * scale + bias
  return y, jax.lax.stop_gradient(mean), jax.lax.stop_gradient(var)


def _bn_impl():
  """`batch_norm`, or the textbook formula when the environment says
  BOSSNAX_BN=textbook: a benchmark switch, read when a step is traced
  (benchmarks/gpu_session.py clears the compiled steps around it)."""
  return (textbook_batch_norm if os.environ.get('BOSSNAX_BN') == 'textbook'
          else batch_norm)


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

    if mode == 'eval':
      mean, var = ra_mean.value[index], ra_var.value[index]
      y = (x.astype(jnp.float32) - mean) * jax.lax.rsqrt(var + self.epsilon)
      y = y * scale[index] + bias[index]
    else:
      y, mean, var = _bn_impl()(
          x, scale[index], bias[index],
          jax.lax.stop_gradient(ra_mean.value[index]), self.epsilon)
      # the statistics only move running averages: no gradient through them
      mean, var = jax.lax.stop_gradient((mean, var))
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
