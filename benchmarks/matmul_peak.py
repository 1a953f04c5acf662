"""The device's measured matrix-product ceiling (prints TFLOP/s), the
denominator of the model FLOP utilisation that train_step.py reports.

  python benchmarks/matmul_peak.py [--n=8192] [--repeats=20]
"""

import argparse
import time

import jax
import jax.numpy as jnp


def rate(dtype, n, repeats):
  k1, k2 = jax.random.split(jax.random.key(0))
  # Random operands: zeros can run faster than real data.
  a = jax.random.normal(k1, (n, n), dtype)
  b = jax.random.normal(k2, (n, n), dtype)
  f = jax.jit(lambda a, b: a @ b)
  f(a, b).block_until_ready()
  tic = time.perf_counter()
  for _ in range(repeats):
    out = f(a, b)
  out.block_until_ready()
  dt = (time.perf_counter() - tic) / repeats
  return 2 * n ** 3 / dt / 1e12


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--n', type=int, default=8192)
  p.add_argument('--repeats', type=int, default=20)
  a = p.parse_args()
  print(f'device: {jax.devices()[0].device_kind}')
  for name, dtype in (('bfloat16', jnp.bfloat16), ('float32', jnp.float32)):
    print(f'{name} {a.n}x{a.n} matmul: {rate(dtype, a.n, a.repeats):.0f} '
          f'TFLOP/s (default precision)')


if __name__ == '__main__':
  main()
