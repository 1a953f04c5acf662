"""One process of the multi-process test (run by test_multiprocess.py).

  python tests/multiprocess_worker.py PROCESS_ID NUM_PROCESSES PORT NPZ OUT

Trains 3 steps of block 0 of the tiny config on a data-parallel mesh over all
processes' devices; each process loads only its slice of every batch.
Process 0 writes the final parameters to OUT (npz).
"""

import os
import sys

pid, nproc, port, npz, out = sys.argv[1:6]
pid, nproc = int(pid), int(nproc)
os.environ['XLA_FLAGS'] = (
    f'--xla_force_host_platform_device_count={4 // nproc} '
    '--xla_backend_optimization_level=0')  # as tests/conftest.py
os.environ['JAX_PLATFORMS'] = 'cpu'
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bossnax import parallel  # noqa: E402
from bossnax.config import load_config_file  # noqa: E402
from bossnax.data.pipeline import Batches  # noqa: E402
from bossnax.data.sources import make_source  # noqa: E402
from bossnax.spaces import make_space  # noqa: E402
from bossnax.engine.supernet import Trainer  # noqa: E402
from bossnax.methods import build_method  # noqa: E402

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
c = load_config_file(os.path.join(root, 'configs', 'nats_cifar10.py') +
                     ':tiny')
c.data.source, c.data.path = 'npz', npz
if nproc > 1:
  c.distributed.mode = 'on'
  c.distributed.coordinator_address = f'localhost:{port}'
  c.distributed.num_processes = nproc
  c.distributed.process_id = pid
  c.distributed.cpu_collectives = 'gloo'
else:
  c.distributed.mode = 'off'
parallel.maybe_initialize_distributed(c.distributed)
assert jax.device_count() == 4, jax.devices()
space = make_space(c.space)
mesh = parallel.make_mesh()
source = make_source(c.data)
batches = Batches(source, 'train', c.train.batch_size, seed=0,
                  process_index=jax.process_index(),
                  process_count=jax.process_count())
method = build_method(c, space)
trainer = Trainer(c, space, method.objective, mesh, batches.steps_per_epoch)
sampler = method.stages[0].sampler
state = trainer.start_block(trainer.init_state(0), 0)
key = jax.random.key(0)
table, prefix = space.block_paths(0), np.zeros(5, np.int32)
archs = lambda s: np.concatenate(
    [sampler.sample(0, s, table), np.zeros((2, 3), np.int32)], 1)
for step in range(3):
  local = batches.get_batch(step)['image'][None]
  images = parallel.global_batch(mesh, local, batch_axis=1)
  state, metrics = trainer.step_fn(0)(state, images, key, archs(step), None)
params = jax.tree_util.tree_flatten_with_path(state['params'])[0]
if jax.process_index() == 0:
  np.savez(out, **{jax.tree_util.keystr(k): np.asarray(v) for k, v in params})
print(f'process {pid}: loss {float(metrics["loss"]):.6f}', flush=True)
