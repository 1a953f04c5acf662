"""Devices, mesh and shardings: data parallelism with jit over a Mesh.

The state is replicated and batches are split along their example axis over
the 'data' axis of a 1-D mesh of all devices (of all processes). Batch-norm
statistics computed with jnp.mean over a sharded batch are global: XLA inserts
the all-reduce, so no pmean appears in model code.
"""

from __future__ import annotations

import logging

log = logging.getLogger('bossnax')
import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA = 'data'


def maybe_initialize_distributed(cfg) -> None:
  """Start JAX's multi-controller runtime when the config or env asks for it.

  cfg: ConfigDict with `mode` ('auto' | 'off' | 'on'), `coordinator_address`,
  `num_processes`, `process_id` (-1 = from the environment).
  'auto' initialises when a cluster environment is detected (TPU pod, SLURM,
  Open MPI) or a coordinator address is given.
  """
  mode = cfg.get('mode', 'auto')
  if mode == 'off':
    return
  explicit = bool(cfg.get('coordinator_address', ''))
  env = any(v in os.environ for v in (
      'SLURM_JOB_ID', 'OMPI_COMM_WORLD_SIZE', 'TPU_WORKER_HOSTNAMES',
      'JAX_COORDINATOR_ADDRESS'))
  if mode == 'auto' and not (explicit or env):
    return
  if cfg.get('cpu_collectives', ''):  # CPU-only clusters and tests: gloo
    jax.config.update('jax_cpu_collectives_implementation',
                      cfg.cpu_collectives)
  kwargs = {}
  if explicit:
    kwargs['coordinator_address'] = cfg.coordinator_address
  if cfg.get('num_processes', -1) >= 0:
    kwargs['num_processes'] = cfg.num_processes
  if cfg.get('process_id', -1) >= 0:
    kwargs['process_id'] = cfg.process_id
  try:
    jax.distributed.initialize(**kwargs)
  except Exception as e:  # one line naming the fix, never a stack of retries
    first = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
    raise RuntimeError(
        f'jax.distributed.initialize failed ({first}): check '
        '--config.distributed.coordinator_address=HOST:PORT, num_processes '
        'and process_id (the same address and count on every process)'
    ) from None
  log.info('jax.distributed: process %d of %d, %d local / %d global devices',
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())


def make_mesh(num_devices: int = 0) -> Mesh:
  """1-D data mesh over all devices (or the first `num_devices`)."""
  devices = jax.devices()
  if num_devices:
    if num_devices > len(devices):
      raise ValueError(f'asked for {num_devices} devices, {len(devices)} '
                       'exist: lower --config.num_devices')
    devices = devices[:num_devices]
  return Mesh(np.asarray(devices), (DATA,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, batch_axis: int = 0) -> NamedSharding:
  return NamedSharding(mesh, P(*([None] * batch_axis), DATA))


def global_batch(mesh: Mesh, local: np.ndarray, batch_axis: int = 0):
  """Assemble the global array from this process's part of the batch."""
  sharding = batch_sharding(mesh, batch_axis)
  n = mesh.devices.size
  global_n = local.shape[batch_axis] * jax.process_count()
  if global_n % n:
    raise ValueError(f'global batch {global_n} does not split over {n} '
                     'devices: make the batch size a multiple of the device '
                     'count')
  global_shape = list(local.shape)
  global_shape[batch_axis] = global_n
  return jax.make_array_from_process_local_data(sharding, local,
                                                tuple(global_shape))


def is_main_process() -> bool:
  return jax.process_index() == 0


def enable_compilation_cache(cache_dir: str) -> None:
  """Persistent XLA compilation cache in `cache_dir` ('' = leave off).

  A restarted or resumed run, a re-score and a benchmark then load their
  compiled programs instead of compiling again (tens of seconds per block on
  a GPU). Thresholds are lowered so every program is cached, small ones too.
  """
  if not cache_dir:
    return
  jax.config.update('jax_compilation_cache_dir', cache_dir)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
