"""Block scoring throughput: the vectorised pass against the per-path loop,
same device, same run (prints paths/s and the ratio).

  python benchmarks/score_block.py --config=configs/nats_cifar10.py:quick \
      [--block=0] [--images=128] [--repeats=2]

Uses a freshly initialised supernet (scores are not the point, speed is);
BN recalibration included. Times exclude compilation (one warm-up pass).
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bossnax import parallel  # noqa: E402
from bossnax.engine.evaluator import Evaluator  # noqa: E402
from bossnax.config import parse_args  # noqa: E402
from bossnax.spaces import make_space  # noqa: E402
from bossnax.engine.supernet import Trainer  # noqa: E402


def main(argv):
  config, flags = parse_args(argv, {'block': '0', 'images': '128',
                                    'repeats': '2'})
  block, n, repeats = (int(flags['block']), int(flags['images']),
                       int(flags['repeats']))
  config.search.batch_size = min(config.search.batch_size, n)
  parallel.enable_compilation_cache(config.compilation_cache_dir)
  space = make_space(config.space)
  mesh = parallel.make_mesh(config.num_devices)
  shape = (config.data.image_size, config.data.image_size, 3)
  trainer = Trainer.from_config(config, mesh, 1, shape, space)
  state = trainer.init_state(0)
  scorer = Evaluator(config, space, trainer.model, trainer.objective, mesh)
  rng = np.random.default_rng(0)
  val = rng.integers(0, 255, (n, *shape), np.uint8)
  calib = rng.integers(0, 255, (config.search.calib_batch, *shape), np.uint8)
  prefix = np.asarray(space.flatten(space.default_arch()))
  results = {}
  for name, fn in (('vectorised', scorer.score_block),
                   ('per-path loop', scorer.score_block_loop)):
    table, scores = fn(state, block, prefix, val, calib)  # warm-up/compile
    tic = time.perf_counter()
    for _ in range(repeats):
      table, scores = fn(state, block, prefix, val, calib)
    dt = (time.perf_counter() - tic) / repeats
    results[name] = (len(table) / dt, dt, scores)
  print(f'device: {jax.devices()[0].device_kind} x{mesh.devices.size}; '
        f'space {space.name} block {block}: {len(table)} paths, {n} images '
        f'(2 views), calib batch {config.search.calib_batch}, chunk '
        f'{config.search.path_chunk}')
  for name, (rate, dt, _) in results.items():
    print(f'{name:>14}: {rate:8.2f} paths/s ({dt:.2f} s per block)')
  v, l = results['vectorised'], results['per-path loop']
  print(f'ratio vectorised / loop: {v[0] / l[0]:.2f}x; max |score diff| '
        f'{np.abs(v[2] - l[2]).max():.2e}')


if __name__ == '__main__':
  main(sys.argv[1:])
