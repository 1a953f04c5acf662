r"""Throughput of the on-device training views (bossnax/data/augment.py):
DeiT's views with and without RandAugment, jitted, on random uint8 images.

  python benchmarks/augment_views.py [--size=224] [--batch=64] [--steps=5]
      [--ops=rrc,flip,erase --ops=rrc,flip,randaug,erase] [--per_op]

Prints compile time, ms per batch and images/s per op list (the image
decoding and host crops are benchmarks/input_pipeline.py's); --per_op also
times each RandAugment op alone on the batch (what a layer pays for each,
since under vmap it computes them all).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from bossnax import defaults  # noqa: E402
from bossnax.data.augment import make_single_view_fn  # noqa: E402

DEIT = ('rrc,flip,erase', 'rrc,flip,randaug,erase')


def measure(ops, size=224, batch=64, steps=5):
  cfg = ml_collections.ConfigDict(dict(
      ops=ops, pad=4, mean=defaults.IMAGENET_MEAN, std=defaults.IMAGENET_STD,
      randaug='rand-m9-mstd0.5-inc1', erase_prob=0.25))
  view = jax.jit(make_single_view_fn(cfg))
  images = jnp.asarray(np.random.default_rng(0).integers(
      0, 255, (batch, size, size, 3)), jnp.uint8)
  tic = time.perf_counter()
  view(jax.random.key(0), images).block_until_ready()
  compile_s = time.perf_counter() - tic
  tic = time.perf_counter()
  for i in range(steps):
    view(jax.random.key(i + 1), images).block_until_ready()
  dt = (time.perf_counter() - tic) / steps
  return {'ops': ops, 'size': size, 'batch': batch, 'compile_s': compile_s,
          'ms_batch': dt * 1e3, 'images_s': batch / dt}


def per_op(size=224, batch=64, steps=3):
  """ms per batch of each RandAugment op alone, at magnitude 9."""
  from bossnax.data import randaugment as ra
  x = jnp.asarray(np.random.default_rng(0).integers(
      0, 255, (batch, size, size, 3)), jnp.float32)
  m, s = jnp.full(batch, 9.0), jnp.ones(batch)
  fill = jnp.asarray([124.0, 116.0, 104.0])
  out = {}
  for name in ra.INCREASING:
    fn = jax.jit(jax.vmap(lambda a, b, c, n=name: ra.apply_op(n, a, b, c,
                                                                fill)))
    fn(x, m, s).block_until_ready()
    tic = time.perf_counter()
    for _ in range(steps):
      fn(x, m, s).block_until_ready()
    out[name] = (time.perf_counter() - tic) / steps * 1e3
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--size', type=int, default=224)
  p.add_argument('--batch', type=int, default=64)
  p.add_argument('--steps', type=int, default=5)
  p.add_argument('--ops', action='append', default=[])
  p.add_argument('--per_op', action='store_true')
  a = p.parse_args(argv)
  print(f'{jax.devices()[0].device_kind}, {a.size}x{a.size}, batch {a.batch}')
  for ops in a.ops or DEIT:
    r = measure(ops, a.size, a.batch, a.steps)
    print(f"{ops:28s} compile {r['compile_s']:5.1f} s  {r['ms_batch']:8.1f} "
          f"ms/batch  {r['images_s']:9.0f} images/s")
  if a.per_op:
    print('RandAugment ops alone, ms per batch: ' + ', '.join(
        f'{n} {ms:.0f}' for n, ms in per_op(a.size, a.batch).items()))
  return 0


if __name__ == '__main__':
  sys.exit(main())
