"""Measured latency as a search cost (search_arch --latency_budget=MS).

Each architecture's standalone network is jitted and timed on the current
device: median wall time of `repeats` forward passes of a batch of
`batch` images after a warm-up, in milliseconds, each architecture once.
Weights are zeros of the right shapes (dense networks do the same work
whatever the values), so nothing is initialised. One program is compiled
per architecture (about 2 s for a NATS network on the 2-core CPU), so the
searchers measure only candidates that pass the MAdds / params budget.
Timing varies with load and device; the figure is this device's, now.
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from bossnax.searchers.ranking import cost_front


def default_image_size(space):
  """The input side latency is measured at when the caller gives none:
  NATS's CIFAR 32, else the space's own (`image_size` or `resolution`) or
  ImageNet's 224."""
  if space.name == 'nats':
    return 32
  for name in ('image_size', 'resolution'):
    size = getattr(space, name, None)
    if isinstance(size, int) and size > 0:
      return size
  return 224


def front(rows, ms):
  """The rows (arch, score, ...) no other beats on both score and the
  milliseconds `ms[arch]`, fastest first."""
  return cost_front([r for r in rows if r[0] in ms], lambda r: ms[r[0]])


def pareto(rows, ms):
  """ranking.json's front over milliseconds: dicts, fastest first."""
  return [{'arch': r[0], 'score': r[1], 'latency_ms': ms[r[0]],
           'flops': r[2], 'params': r[3]} for r in front(rows, ms)]


class MeasuredLatency:
  """text -> milliseconds on this device (cached per architecture). In a
  run of several processes every process times the network and all take
  process 0's figure, so their searches stay the same."""

  def __init__(self, space, image_size, batch=1, repeats=10, warmup=2):
    if int(batch) < 1:
      raise ValueError(f'latency batch {batch}: give 1 or more images')
    self.space, self.image_size = space, int(image_size)
    self.batch, self.repeats, self.warmup = int(batch), int(repeats), int(
        warmup)
    self.measured: dict[str, float] = {}

  def __call__(self, text: str) -> float:
    if text not in self.measured:
      ms = self._measure(self.space.from_string(text))
      if jax.process_count() > 1:  # one figure for every process
        from jax.experimental import multihost_utils
        ms = float(multihost_utils.broadcast_one_to_all(np.float32(ms)))
      self.measured[text] = ms
    return self.measured[text]

  def summary(self, rows, with_front=False, budget_ms=0.0):
    """ranking.json's `latency`: how and where it was measured, the
    milliseconds of every evaluated architecture measured, and with
    `with_front` the Pareto front of score against them."""
    import jax
    out = {'device': jax.devices()[0].device_kind, 'batch': self.batch,
           'image_size': self.image_size, 'budget_ms': budget_ms,
           'measured_ms': {r[0]: self.measured[r[0]] for r in rows
                           if r[0] in self.measured}}
    if with_front:
      out['pareto'] = pareto(rows, self.measured)
    return out

  def _measure(self, arch) -> float:
    net, vec = self.space.standalone(arch)
    vec = jnp.asarray(vec, jnp.int32)
    # a space with a resolution gene (dynresnet's) runs at its own size
    sizes = self.space.input_sizes(self.space.flatten(arch)[None])
    size = int(sizes[0]) if sizes is not None else self.image_size
    x = jnp.zeros((self.batch, size, size, 3), jnp.float32)
    shapes = jax.eval_shape(lambda: net.init(jax.random.key(0), x, vec,
                                             mode='eval', output='logits'))
    variables = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    forward = jax.jit(functools.partial(net.apply, mode='eval',
                                        output='logits'))
    for _ in range(self.warmup):  # the first compiles
      jax.block_until_ready(forward(variables, x, vec))
    times = []
    for _ in range(self.repeats):
      tic = time.perf_counter()
      jax.block_until_ready(forward(variables, x, vec))
      times.append(time.perf_counter() - tic)
    return float(np.median(times) * 1e3)
