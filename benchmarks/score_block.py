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


def measure(config, block=0, n=128, repeats=2):
  """Scores block `block`'s paths vectorised and one path at a time: a
  dict of figures (seconds per block, paths/s, the ratio, the largest
  difference between the two)."""
  config.search.batch_size = min(config.search.batch_size, n)
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
  out = {'device': f'{jax.devices()[0].device_kind} x{mesh.devices.size}',
         'space': space.name, 'block': block, 'images': n,
         'calib_batch': config.search.calib_batch,
         'path_chunk': config.search.path_chunk}
  scores = {}
  for name, fn in (('vectorised', scorer.score_block),
                   ('loop', scorer.score_block_loop)):
    table, scores[name] = fn(state, block, prefix, val, calib)  # compile
    tic = time.perf_counter()
    for _ in range(repeats):
      table, scores[name] = fn(state, block, prefix, val, calib)
    dt = (time.perf_counter() - tic) / repeats
    out[f'{name}_s'], out[f'{name}_paths_s'] = dt, len(table) / dt
  out['paths'] = len(table)
  out['ratio'] = out['loop_s'] / out['vectorised_s']
  out['max_diff'] = float(np.abs(scores['vectorised'] - scores['loop']).max())
  return out


def main(argv):
  config, flags = parse_args(argv, {'block': '0', 'images': '128',
                                    'repeats': '2'})
  parallel.enable_compilation_cache(config.compilation_cache_dir)
  out = measure(config, int(flags['block']), int(flags['images']),
                int(flags['repeats']))
  print(f"device: {out['device']}; space {out['space']} block "
        f"{out['block']}: {out['paths']} paths, {out['images']} images "
        f"(2 views), calib batch {out['calib_batch']}, chunk "
        f"{out['path_chunk']}")
  for name in ('vectorised', 'loop'):
    print(f"{name:>14}: {out[name + '_paths_s']:8.2f} paths/s "
          f"({out[name + '_s']:.2f} s per block)")
  print(f"ratio vectorised / loop: {out['ratio']:.2f}x; max |score diff| "
        f"{out['max_diff']:.2e}")


if __name__ == '__main__':
  main(sys.argv[1:])
