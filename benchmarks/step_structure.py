r"""The structure of the compiled train step that the GPU figures rest on,
from the lowered program (traced, not compiled; seconds on a CPU):
reductions, convolutions and while loops of block 0's step for 1, 2 and 4
sampled paths (vmapped paths keep the counts; a loop over paths adds ops or
a while), and XLA's FLOPs that two more paths add in block 2 with and
without the prefix cache.

  python benchmarks/step_structure.py [--config=configs/nats_cifar10.py:tiny]

tests/test_train.py::test_step_program_batches_paths_and_stays_on_device
asserts on the same functions.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import numpy as np  # noqa: E402

OPS = ('reduce', 'convolution', 'while')


def lowered_steps(config, block, paths=(2, 4), prefix=(1, 0, 1, 0, 0)):
  """The step of `block` lowered for each number of sampled paths (the
  step takes any: the paths are an array), on one device."""
  from bossnax import parallel
  from bossnax.engine.supernet import Trainer
  from bossnax.samplers import make_sampler
  from bossnax.spaces import make_space
  space = make_space(config.space)
  size = config.data.image_size
  t = Trainer.from_config(config, parallel.make_mesh(1), 4,
                          (size, size, 3), space)
  state = jax.eval_shape(lambda: t.start_block(t.init_state(0), block))
  prefix = np.asarray(prefix, np.int32)
  table = space.block_paths(block, space.unflatten(prefix)[:block])
  sampler = make_sampler(config, space)
  rows = []
  for s in range(-(-max(paths) // config.train.paths_per_step)):
    archs = np.tile(prefix, (config.train.paths_per_step, 1))
    archs[:, space.block_slice(block)] = sampler.sample(block, s, table)
    rows.append(archs)
  archs = np.concatenate(rows)
  images = parallel.global_batch(t.mesh, np.zeros(
      (1, 16, size, size, 3), np.uint8), batch_axis=1)
  return [t.step_fn(block).lower(state, images, jax.random.key(0),
                                 archs[:k], None) for k in paths]


def op_counts(lowered):
  text = lowered.as_text()
  return {op: len(re.findall(rf'stablehlo\.{op}\b', text)) for op in OPS}


def flops(lowered):
  cost = lowered.cost_analysis()
  return (cost[0] if isinstance(cost, (list, tuple)) else cost)['flops']


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--config', default='configs/nats_cifar10.py:tiny')
  a = p.parse_args(argv)
  from bossnax.config import load_config_file
  config = load_config_file(os.path.join(ROOT, a.config))
  config.num_devices, config.train.fair = 1, False
  for k, lowered in zip((1, 2, 4), lowered_steps(config, 0, (1, 2, 4))):
    print(f'block 0, {k} path(s): {op_counts(lowered)}')
  for cache in (True, False):
    config.train.cache_prefix = cache
    two, four = lowered_steps(config, 2)
    print(f'block 2, prefix cache {"on " if cache else "off"}: 4 paths cost '
          f'{100 * (flops(four) / flops(two) - 1):.1f}% more FLOPs than 2')
  return 0


if __name__ == '__main__':
  sys.exit(main())
