"""One 3x3 convolution, plain and inside `lax.switch`: forward and gradient
times on the current device (prints figures).

  python benchmarks/conv_in_switch.py [--batch=16] [--size=32] [--channels=64]

Why it exists: HyTra's supernet runs every candidate inside a switch. On
XLA:CPU the gradient of a convolution inside a conditional is far slower
than the same gradient outside one (the weight gradient most), which is what
the CPU figures of benchmarks/hytra_path.py measure; this isolates it. The
same script on a GPU says whether the device has the problem.
"""

import argparse
import time

import jax
import jax.numpy as jnp


def bench(fn, *args, reps=10):
  compiled = jax.jit(fn).lower(*args).compile()
  jax.block_until_ready(compiled(*args))
  tic = time.perf_counter()
  for _ in range(reps):
    out = compiled(*args)
  jax.block_until_ready(out)
  return (time.perf_counter() - tic) / reps * 1e3


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--batch', type=int, default=16)
  p.add_argument('--size', type=int, default=32)
  p.add_argument('--channels', type=int, default=64)
  a = p.parse_args(argv)
  shape = (a.batch, a.size, a.size, a.channels)
  x = jax.random.normal(jax.random.key(0), shape)
  w = jax.random.normal(jax.random.key(1), (3, 3, a.channels, a.channels))
  conv = lambda w, x: jax.lax.conv_general_dilated(
      x, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  plain = lambda w, x, i: (conv(w, x) ** 2).sum()
  switch = lambda w, x, i: (jax.lax.switch(
      i, [lambda w, x: jnp.zeros(shape), conv], w, x) ** 2).sum()
  i = jnp.int32(1)  # the conv branch
  print(f'{jax.devices()[0].device_kind}: conv 3x3, {shape}')
  for what, argnums in (('forward', None), ('gradient w and x', (0, 1)),
                        ('gradient w only', 0), ('gradient x only', 1)):
    times = []
    for fn in (plain, switch):
      f = fn if argnums is None else jax.grad(fn, argnums=argnums)
      times.append(bench(f, w, x, i))
    print(f'{what:>17}: plain {times[0]:8.1f} ms, inside switch '
          f'{times[1]:8.1f} ms ({times[1] / times[0]:.1f}x)')


if __name__ == '__main__':
  main()
