"""Train-step throughput of a config: images/s and ms/step (prints figures).

  python benchmarks/train_step.py --config=configs/nats_cifar10.py \
      --config.train.batch_size=256 --config.train.accum_steps=1 [--steps=20]

Random uint8 images of the config's shape; the block is --block (default 0).
Compiles ahead of time (reported apart), runs --warmup steps, then times
--steps steps with block_until_ready. --profile_dir=DIR traces 3 more steps
(a Perfetto trace under DIR). --compile_only=true stops after printing the
compiled step's memory (XLA's buffer assignment): remat and chunking figures.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bossnax import parallel  # noqa: E402
from bossnax.config import parse_args  # noqa: E402
from bossnax.samplers import make_sampler  # noqa: E402
from bossnax.spaces import make_space  # noqa: E402
from bossnax.engine.supernet import Trainer  # noqa: E402


def main(argv):
  config, flags = parse_args(argv, {'steps': '20', 'warmup': '3',
                                    'block': '0', 'peak_tflops': '0',
                                    'profile_dir': '', 'compile_only': 'false'})
  steps, warmup, block = (int(flags['steps']), int(flags['warmup']),
                          int(flags['block']))
  parallel.enable_compilation_cache(config.compilation_cache_dir)
  space = make_space(config.space)
  mesh = parallel.make_mesh(config.num_devices)
  shape = (config.data.image_size, config.data.image_size, 3)
  trainer = Trainer.from_config(config, mesh, 1000, shape, space)
  t = config.train
  state = trainer.start_block(trainer.init_state(0), block)
  prefix = np.asarray(space.flatten(space.default_arch()))
  # constrained spaces (HyTra) list a block's paths given the earlier blocks
  table = space.block_paths(block, space.unflatten(prefix)[:block])
  archs = np.tile(prefix, (t.paths_per_step, 1))
  archs[:, space.block_slice(block)] = make_sampler(config, space).sample(
      block, 0, table)
  key = jax.random.key(0)
  rng = np.random.default_rng(0)
  local = rng.integers(0, 255, (t.accum_steps, t.batch_size //
                                jax.process_count(),
                                *shape), np.uint8)
  images = parallel.global_batch(mesh, local, batch_axis=1)
  step = trainer.step_fn(block)
  tic = time.perf_counter()
  compiled = step.lower(state, images, key, archs, None).compile()
  compile_s = time.perf_counter() - tic
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float((cost or {}).get('flops', 0.0))  # XLA's count, whole step
  # XLA's count of bytes read and written: the memory-bound work (BN
  # statistics, element-wise) that FLOPs do not show.
  bytes_accessed = float((cost or {}).get('bytes accessed', 0.0))
  mem = compiled.memory_analysis()
  if mem is not None:  # XLA's buffer assignment of the compiled step
    print(f'compiled step: {mem.temp_size_in_bytes / 2**30:.2f} GiB of '
          f'temporaries, {mem.argument_size_in_bytes / 2**30:.2f} GiB of '
          f'arguments (compile {compile_s:.1f} s)')
  if flags['compile_only'].lower() in ('1', 'true'):
    return
  for _ in range(warmup):
    state, m = compiled(state, images, key, archs, None)
  jax.block_until_ready(state)
  tic = time.perf_counter()
  for _ in range(steps):
    state, m = compiled(state, images, key, archs, None)
  jax.block_until_ready(state)
  dt = (time.perf_counter() - tic) / steps
  if flags['profile_dir']:  # a few more steps under the profiler
    with jax.profiler.trace(flags['profile_dir'], create_perfetto_trace=True):
      for _ in range(3):
        state, m = compiled(state, images, key, archs, None)
      jax.block_until_ready(state)
  n = t.batch_size * t.accum_steps
  print(f'device: {jax.devices()[0].device_kind} x{mesh.devices.size}')
  print(f'space {space.name} block {block}: batch {n} '
        f'({t.accum_steps} x {t.batch_size}), {t.paths_per_step} paths/step, '
        f'dtype {config.dtype}')
  print(f'compile {compile_s:.1f} s; {warmup} warm-up, {steps} timed steps: '
        f'{dt * 1e3:.1f} ms/step, {n / dt:.0f} images/s, '
        f'{n * t.paths_per_step / dt:.0f} image-paths/s')
  if flops:
    # XLA's FLOPs count masked channels at full width: this is the rate the
    # hardware runs, not the FLOPs of the narrow paths sampled.
    line = f'XLA-counted {flops / 1e9:.1f} GFLOP/step, {flops / dt / 1e12:.1f} TFLOP/s'
    peak = float(flags['peak_tflops'])
    if peak:
      line += f', {100 * flops / dt / 1e12 / peak:.1f}% of {peak:.0f} TFLOP/s'
    print(line)
  if bytes_accessed:
    print(f'XLA-counted {bytes_accessed / 2**30:.2f} GiB accessed/step, '
          f'{bytes_accessed / dt / 1e9:.1f} GB/s')


if __name__ == '__main__':
  main(sys.argv[1:])
