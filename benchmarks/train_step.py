"""Train-step throughput of a config: images/s and ms/step (prints figures).

  python benchmarks/train_step.py --config=configs/nats_cifar10.py \
      --config.train.batch_size=256 --config.train.accum_steps=1 [--steps=20]

Random uint8 images of the config's shape; the block is --block (default 0).
Compiles ahead of time (reported apart), runs --warmup steps, then times
--steps steps with block_until_ready. --profile_dir=DIR traces 3 more steps
(a Perfetto trace under DIR). --compile_only=true stops after printing the
compiled step's memory (XLA's buffer assignment): remat and chunking figures.

Model FLOPs (NATS; `model_flops`): the work the sampled paths would cost as
plain networks, from the space's own count (describe), not XLA's count of
masked channels at full width: per image and view, each path's trained
block forward + backward (3 x its forward) and its target's forward, and
the finished blocks' forward once for each side. MFU = model FLOP/s over
--peak_tflops.
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


def model_flops(space, block, archs, images, resolution, views=2):
  """FLOPs (2 x multiply-adds) of one step's useful work, or None where
  the space has no per-layer count (NATS has one)."""
  from bossnax.spaces.nats import NATSSpace, nats_layer_costs
  if not isinstance(space, NATSSpace):
    return None
  layers = space.block_split
  done = [i for b in layers[:block] for i in b]
  total = 0
  for arch in archs:
    madds, _ = nats_layer_costs(space.channels(space.unflatten(arch)),
                                space.num_classes, resolution)
    total += 4 * sum(madds[i] for i in layers[block])  # 3 online + 1 target
  madds, _ = nats_layer_costs(space.channels(space.unflatten(archs[0])),
                              space.num_classes, resolution)
  total += 2 * sum(madds[i] for i in done)  # prefix, online and target
  return 2.0 * total * views * images


def measure(config, block=0, steps=20, warmup=3, peak_tflops=0.0,
            profile_dir='', compile_only=False):
  """Times the step of `block`: a dict of figures (ms_step, images_s,
  compile_s, XLA's flops / bytes, model FLOPs and MFU where known)."""
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
  out = {'device': f'{jax.devices()[0].device_kind} x{mesh.devices.size}',
         'space': space.name, 'block': block,
         'batch': t.batch_size * t.accum_steps, 'paths': t.paths_per_step,
         'dtype': config.dtype, 'compile_s': time.perf_counter() - tic}
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  out['xla_flops'] = float((cost or {}).get('flops', 0.0))  # whole step
  # XLA's count of bytes read and written: the memory-bound work (BN
  # statistics, element-wise) that FLOPs do not show.
  out['xla_bytes'] = float((cost or {}).get('bytes accessed', 0.0))
  mem = compiled.memory_analysis()
  if mem is not None:  # XLA's buffer assignment of the compiled step
    out['temp_gib'] = mem.temp_size_in_bytes / 2**30
    out['arg_gib'] = mem.argument_size_in_bytes / 2**30
  if compile_only:
    return out
  for _ in range(warmup):
    state, m = compiled(state, images, key, archs, None)
  jax.block_until_ready(state)
  tic = time.perf_counter()
  for _ in range(steps):
    state, m = compiled(state, images, key, archs, None)
  jax.block_until_ready(state)
  dt = (time.perf_counter() - tic) / steps
  if profile_dir:  # a few more steps under the profiler
    with jax.profiler.trace(profile_dir, create_perfetto_trace=True):
      for _ in range(3):
        state, m = compiled(state, images, key, archs, None)
      jax.block_until_ready(state)
  n = out['batch']
  out.update(ms_step=dt * 1e3, images_s=n / dt,
             image_paths_s=n * t.paths_per_step / dt)
  flops = model_flops(space, block, archs, n, config.data.image_size)
  if flops:
    out['model_tflops'] = flops / dt / 1e12
    if peak_tflops:
      out['mfu'] = out['model_tflops'] / peak_tflops
  return out


def report(out, peak_tflops=0.0):
  """The figures of `measure` as lines."""
  lines = [f"device: {out['device']}",
           f"space {out['space']} block {out['block']}: batch {out['batch']}, "
           f"{out['paths']} paths/step, dtype {out['dtype']}"]
  if 'temp_gib' in out:
    lines.append(f"compiled step: {out['temp_gib']:.2f} GiB of temporaries, "
                 f"{out['arg_gib']:.2f} GiB of arguments (compile "
                 f"{out['compile_s']:.1f} s)")
  if 'ms_step' not in out:  # compile only: XLA's counts per step
    lines.append(f"XLA-counted {out['xla_flops'] / 1e9:.1f} GFLOP and "
                 f"{out['xla_bytes'] / 2**30:.2f} GiB accessed per step")
    return lines
  lines.append(f"{out['ms_step']:.1f} ms/step, {out['images_s']:.0f} "
               f"images/s, {out['image_paths_s']:.0f} image-paths/s")
  dt = out['ms_step'] / 1e3
  if out['xla_flops']:
    # XLA's FLOPs count masked channels at full width: the rate the
    # hardware runs, not the FLOPs of the narrow paths sampled.
    line = (f"XLA-counted {out['xla_flops'] / 1e9:.1f} GFLOP/step, "
            f"{out['xla_flops'] / dt / 1e12:.1f} TFLOP/s")
    if peak_tflops:
      line += (f", {100 * out['xla_flops'] / dt / 1e12 / peak_tflops:.1f}% "
               f"of {peak_tflops:.0f} TFLOP/s")
    lines.append(line)
  if 'model_tflops' in out:
    line = f"model {out['model_tflops']:.2f} TFLOP/s (the paths' own count)"
    if 'mfu' in out:
      line += f", MFU {100 * out['mfu']:.1f}%"
    lines.append(line)
  if out['xla_bytes']:
    lines.append(f"XLA-counted {out['xla_bytes'] / 2**30:.2f} GiB "
                 f"accessed/step, {out['xla_bytes'] / dt / 1e9:.1f} GB/s")
  return lines


def main(argv):
  config, flags = parse_args(argv, {'steps': '20', 'warmup': '3',
                                    'block': '0', 'peak_tflops': '0',
                                    'profile_dir': '', 'compile_only': 'false'})
  parallel.enable_compilation_cache(config.compilation_cache_dir)
  peak = float(flags['peak_tflops'])
  out = measure(config, int(flags['block']), int(flags['steps']),
                int(flags['warmup']), peak, flags['profile_dir'],
                flags['compile_only'].lower() in ('1', 'true'))
  print('\n'.join(report(out, peak)))


if __name__ == '__main__':
  main(sys.argv[1:])
