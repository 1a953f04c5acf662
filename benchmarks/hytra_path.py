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


def measure(arch='ResNet50-T', batch=256, resolution=224, dtype='float32',
            base_width=64, heads=(4, 8), stem='imagenet', depth=4,
            classes=1000, steps=20, warmup=3, peak_tflops=0.0):
  """The path's step inside the supernet and standalone: a dict of
  figures (ms/step, images/s, model TFLOP/s and MFU of each side, their
  speed ratio)."""
  space = HyTraSpace(num_classes=classes, base_width=base_width,
                     heads=tuple(heads), stem=stem, depth=depth,
                     last_stride=1 if arch == 'BossNet-T1' else 2)
  path = space.parse(arch)
  cast = jnp.bfloat16 if dtype == 'bfloat16' else None
  madds, _ = space.flops_params(path, resolution=resolution)
  net_alone, vec = space.standalone(path)
  sides = {'standalone': (net_alone, jnp.asarray(vec)),
           'in_supernet': (space.supernet(), jnp.asarray(space.flatten(path)))}
  out = {'device': jax.devices()[0].device_kind, 'arch': arch,
         'resolution': resolution, 'batch': batch, 'dtype': dtype,
         'gmadds_image': madds / 1e9}
  for name, (net, v) in sides.items():
    dt, comp, fwd = time_step(net, v, batch, resolution, classes, cast,
                              steps, warmup)
    tflops = 6 * madds * batch / dt / 1e12
    out[name] = {'ms_step': dt * 1e3, 'images_s': batch / dt,
                 'model_tflops': tflops, 'compile_s': comp,
                 'forward_ms': fwd * 1e3}
    if peak_tflops:
      out[name]['mfu'] = tflops / peak_tflops
  out['speed_ratio'] = (out['standalone']['ms_step'] /
                        out['in_supernet']['ms_step'])
  out['forward_ratio'] = (out['standalone']['forward_ms'] /
                          out['in_supernet']['forward_ms'])
  return out


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
  out = measure(a.arch, a.batch, a.resolution, a.dtype, a.base_width,
                tuple(int(h) for h in a.heads.split(',')), a.stem, a.depth,
                a.classes, a.steps, a.warmup, a.peak_tflops)
  print(f"{out['device']}, {a.arch} at {a.resolution}px, batch {a.batch}, "
        f"{a.dtype}, {out['gmadds_image']:.2f} GMAdds/image")
  for name in ('standalone', 'in_supernet'):
    r = out[name]
    line = (f"{name:>12}: {r['ms_step']:8.1f} ms/step  {r['images_s']:8.0f} "
            f"images/s  {r['model_tflops']:6.1f} model TFLOP/s  (compile "
            f"{r['compile_s']:.0f} s; forward alone {r['forward_ms']:.1f} ms)")
    if 'mfu' in r:
      line += f"  MFU {100 * r['mfu']:.1f}%"
    print(line, flush=True)
  print(f"path in supernet / standalone speed: {out['speed_ratio']:.3f} "
        f"(forward alone {out['forward_ratio']:.3f})")


if __name__ == '__main__':
  main()
