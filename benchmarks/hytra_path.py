"""A HyTra path inside the supernet against the same network standalone
(prints figures): training-step time of each, their ratio, and model FLOP
utilisation from the cost model's multiply-adds.

  python benchmarks/hytra_path.py --arch=ResNet50-T --batch=256 \
      --dtype=bfloat16 --peak_tflops=684 [--resolution=224] [--steps=20]
  python benchmarks/hytra_path.py --arch='[[1],[1],[0,1],[]]' --depth=1 \
      --base_width=4 --stem=cifar --resolution=16 --batch=16   # CPU smoke

Both sides run the same supervised step (forward to logits, softmax
cross-entropy, gradients of every parameter, SGD update): the supernet is
called with the path as data (switches, one slot per scale), the standalone
network has the path built in. The step is the issue-5 target: the path in
the supernet at least 90% as fast as standalone; the forward pass alone is
timed too (benchmarks/conv_in_switch.py says why on XLA:CPU). Model FLOPs = 3 x 2 x
multiply-adds per image (forward + backward), the cost model's count
(docs/hytra.md), so MFU needs --peak_tflops of the device.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from bossnax.spaces.hytra import HyTraSpace  # noqa: E402


def time_step(net, arch_vec, batch, res, classes, dtype, steps, warmup):
  x = jax.random.normal(jax.random.key(0), (batch, res, res, 3))
  y = jax.random.randint(jax.random.key(1), (batch,), 0, classes)
  variables = net.init(jax.random.key(2), x[:2], arch_vec, mode='train')
  params, stats = variables['params'], variables['batch_stats']

  def loss_fn(p, s, x):
    if dtype is not None:
      p, x = jax.tree.map(lambda a: a.astype(dtype), p), x.astype(dtype)
    logits, upd = net.apply({'params': p, 'batch_stats': s}, x, arch_vec,
                            mode='train', output='logits',
                            mutable=['batch_stats'])
    loss = optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), y).mean()
    return loss, upd['batch_stats']

  @jax.jit
  def step(p, s, x):
    (loss, s), g = jax.value_and_grad(loss_fn, has_aux=True)(p, s, x)
    return jax.tree.map(lambda a, b: a - 1e-3 * b, p, g), s, loss

  # The forward pass alone, to tell forward costs from backward ones.
  fwd = jax.jit(loss_fn).lower(params, stats, x).compile()
  jax.block_until_ready(fwd(params, stats, x))
  tic = time.perf_counter()
  for _ in range(steps):
    loss, _ = fwd(params, stats, x)
  jax.block_until_ready(loss)
  fwd_s = (time.perf_counter() - tic) / steps

  tic = time.perf_counter()
  compiled = step.lower(params, stats, x).compile()
  compile_s = time.perf_counter() - tic
  for _ in range(warmup):
    params, stats, loss = compiled(params, stats, x)
  jax.block_until_ready(loss)
  tic = time.perf_counter()
  for _ in range(steps):
    params, stats, loss = compiled(params, stats, x)
  jax.block_until_ready(loss)
  return (time.perf_counter() - tic) / steps, compile_s, fwd_s


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--arch', default='ResNet50-T')
  p.add_argument('--batch', type=int, default=256)
  p.add_argument('--resolution', type=int, default=224)
  p.add_argument('--dtype', default='float32',
                 choices=('float32', 'bfloat16'))
  p.add_argument('--base_width', type=int, default=64)
  p.add_argument('--heads', default='4,8')
  p.add_argument('--stem', default='imagenet')
  p.add_argument('--depth', type=int, default=4)
  p.add_argument('--classes', type=int, default=1000)
  p.add_argument('--steps', type=int, default=20)
  p.add_argument('--warmup', type=int, default=3)
  p.add_argument('--peak_tflops', type=float, default=0.0)
  a = p.parse_args(argv)
  space = HyTraSpace(num_classes=a.classes, base_width=a.base_width,
                     heads=tuple(int(h) for h in a.heads.split(',')),
                     stem=a.stem, depth=a.depth,
                     last_stride=1 if a.arch == 'BossNet-T1' else 2)
  arch = space.parse(a.arch)
  dtype = jnp.bfloat16 if a.dtype == 'bfloat16' else None
  madds, _ = space.flops_params(arch, resolution=a.resolution)
  net_alone, vec = space.standalone(arch)
  sides = {'standalone': (net_alone, jnp.asarray(vec)),
           'in supernet': (space.supernet(), jnp.asarray(space.flatten(arch)))}
  times, fwds = {}, {}
  print(f'{jax.devices()[0].device_kind}, {a.arch} at {a.resolution}px, '
        f'batch {a.batch}, {a.dtype}, {madds / 1e9:.2f} GMAdds/image')
  for name, (net, vec) in sides.items():
    dt, comp, fwd = time_step(net, vec, a.batch, a.resolution, a.classes,
                              dtype, a.steps, a.warmup)
    times[name], fwds[name] = dt, fwd
    tflops = 6 * madds * a.batch / dt / 1e12
    line = (f'{name:>12}: {dt * 1e3:8.1f} ms/step  {a.batch / dt:8.0f} '
            f'images/s  {tflops:6.1f} model TFLOP/s  (compile {comp:.0f} s; '
            f'forward alone {fwd * 1e3:.1f} ms)')
    if a.peak_tflops:
      line += f'  MFU {100 * tflops / a.peak_tflops:.1f}%'
    print(line, flush=True)
  print(f'path in supernet / standalone speed: '
        f'{times["standalone"] / times["in supernet"]:.3f} (forward alone '
        f'{fwds["standalone"] / fwds["in supernet"]:.3f})')


if __name__ == '__main__':
  main()
