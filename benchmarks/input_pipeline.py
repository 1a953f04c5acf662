"""Host input pipeline throughput (prints images/s): what `Run` does per
step before the accelerator sees a batch (index permutation, gather, global
array assembly, device transfer), with the same prefetch thread, and without
any training. Compare with the train step's images/s from train_step.py: the
pipeline keeps the accelerator busy when its rate is well above the step's.

  python benchmarks/input_pipeline.py --config=configs/nats_cifar10.py:real \
      [--steps=200]
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from bossnax import parallel  # noqa: E402
from bossnax.config import parse_args  # noqa: E402
from bossnax.data.pipeline import Batches, prefetch  # noqa: E402
from bossnax.data.sources import make_source  # noqa: E402


def main(argv):
  config, flags = parse_args(argv, {'steps': '200'})
  steps = int(flags['steps'])
  t = config.train
  mesh = parallel.make_mesh(config.num_devices)
  source = make_source(config.data)
  batches = Batches(source, 'train', t.batch_size * t.accum_steps,
                    seed=config.seed, process_index=jax.process_index(),
                    process_count=jax.process_count())

  def load(s):
    local = batches.get_batch(s)['image']
    local = local.reshape(t.accum_steps, -1, *local.shape[1:])
    return parallel.global_batch(mesh, local, batch_axis=1)

  for _, x in prefetch(load, range(3)):  # warm-up
    x.block_until_ready()
  tic = time.perf_counter()
  n = 0
  for _, x in prefetch(load, range(steps)):
    x.block_until_ready()
    n += x.shape[0] * x.shape[1]
  dt = time.perf_counter() - tic
  print(f'device: {jax.devices()[0].device_kind} x{mesh.devices.size}; '
        f'source {config.data.source} ({source.num_examples("train")} '
        f'train images), batch {t.batch_size * t.accum_steps}')
  print(f'input pipeline: {n / dt:.0f} images/s ({dt / steps * 1e3:.2f} '
        f'ms/step over {steps} steps, augmentation runs on device inside '
        'the step)')


if __name__ == '__main__':
  main(sys.argv[1:])
