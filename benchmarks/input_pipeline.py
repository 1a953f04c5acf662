"""Host input pipeline throughput (prints images/s): what `Run` does per
step before the accelerator sees a batch (index permutation, gather, global
array assembly, device transfer), with the same prefetch thread, and without
any training. Compare with the train step's images/s from train_step.py: the
pipeline keeps the accelerator busy when its rate is well above the step's.

  python benchmarks/input_pipeline.py --config=configs/nats_cifar10.py:real \
      [--steps=200]

An ImageNet-style folder, decoded and cropped on the host by
`--config.data.workers` grain processes; `--make_folder=N` first writes N
JPEGs of ImageNet's typical size (500x375, quality 90) made from the
embedded CIFAR images (upscaled, so smoother than photos: real ImageNet
files decode somewhat slower):

  python benchmarks/input_pipeline.py --config=configs/hytra_imagenet.py \
      --config.data.source=folder --config.data.path=/tmp/jpegs \
      --config.data.train_crop=rrc --config.data.workers=2 \
      --config.train.batch_size=64 --config.train.accum_steps=1 \
      --make_folder=1024 --steps=20
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


def make_folder(root, n):
  """n training JPEGs (and n // 10 validation ones) in 10 class folders."""
  import numpy as np
  from PIL import Image
  from bossnax.data.sources import EMBEDDED
  with np.load(EMBEDDED) as f:
    x, y = f['x_train'], f['y_train']
  for split, count in (('train', n), ('val', max(10, n // 10))):
    for i in range(count):
      d = os.path.join(root, split, f'class{int(y[i % len(y)])}')
      os.makedirs(d, exist_ok=True)
      Image.fromarray(x[i % len(x)]).resize((500, 375), Image.BICUBIC).save(
          os.path.join(d, f'{i}.JPEG'), quality=90)


def main(argv):
  config, flags = parse_args(argv, {'steps': '200', 'make_folder': '0'})
  steps = int(flags['steps'])
  if int(flags['make_folder']) and not os.path.isdir(config.data.path):
    make_folder(config.data.path, int(flags['make_folder']))
  t = config.train
  mesh = parallel.make_mesh(config.num_devices)
  source = make_source(config.data, seed=config.seed)
  batches = Batches(source, 'train', t.batch_size * t.accum_steps,
                    seed=config.seed, process_index=jax.process_index(),
                    process_count=jax.process_count(),
                    workers=config.data.workers)

  def load(s):
    local = batches.get_batch(s)['image']
    local = local.reshape(t.accum_steps, -1, *local.shape[1:])
    return parallel.global_batch(mesh, local, batch_axis=1)

  for _, x in prefetch(load, range(3)):  # warm-up (workers start)
    x.block_until_ready()
  tic = time.perf_counter()
  n = 0
  for _, x in prefetch(load, range(3, 3 + steps)):
    x.block_until_ready()
    n += x.shape[0] * x.shape[1]
  dt = time.perf_counter() - tic
  print(f'device: {jax.devices()[0].device_kind} x{mesh.devices.size}; '
        f'source {config.data.source} ({source.num_examples("train")} '
        f'train images of {source.image_shape[0]} px), batch '
        f'{t.batch_size * t.accum_steps}, {config.data.workers} loader '
        f'workers, {os.cpu_count()} host cores')
  print(f'input pipeline: {n / dt:.0f} images/s ({dt / steps * 1e3:.2f} '
        f'ms/step over {steps} steps, augmentation runs on device inside '
        'the step)')
  batches.close()


if __name__ == '__main__':
  main(sys.argv[1:])
