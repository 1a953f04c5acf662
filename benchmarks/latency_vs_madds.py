r"""How far a space's MAdds already tell its measured latency on this
device: times N random architectures (searchers/latency.py: standalone
network, zero weights, median of --repeats forward passes of a batch) and
prints the Spearman correlation of milliseconds with MAdds and params.

  python benchmarks/latency_vs_madds.py [--space=nats] [--n=24]
      [--batch=64] [--image_size=32] [--seed=0]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from bossnax.searchers.latency import MeasuredLatency, default_image_size  # noqa: E402
from bossnax.spaces import make_space  # noqa: E402


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--space', default='nats')
  p.add_argument('--n', type=int, default=24)
  p.add_argument('--batch', type=int, default=64)
  p.add_argument('--image_size', type=int, default=0)
  p.add_argument('--repeats', type=int, default=10)
  p.add_argument('--seed', type=int, default=0)
  a = p.parse_args(argv)
  space = make_space(ml_collections.ConfigDict({'name': a.space}))
  size = a.image_size or default_image_size(space)
  measure = MeasuredLatency(space, size, a.batch, a.repeats)
  rng = np.random.default_rng(a.seed)
  rows, tic = [], time.time()
  while len(rows) < a.n:
    text = space.to_string(space.sample(rng))
    if text not in measure.measured:
      ms = measure(text)
      rows.append((ms, *space.flops_params(space.from_string(text))))
  ms, flops, params = (np.array(c, np.float64) for c in zip(*rows))
  import jax
  print(f'{a.space}: {a.n} random architectures, batch {a.batch} at {size} '
        f'px on {jax.devices()[0].device_kind}, {time.time() - tic:.0f} s')
  print(f'  ms {ms.min():.2f}-{ms.max():.2f}; Spearman of ms with MAdds '
        f'{stats.spearmanr(ms, flops)[0]:.3f}, with params '
        f'{stats.spearmanr(ms, params)[0]:.3f}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
