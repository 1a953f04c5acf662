"""Tests run on CPU with 8 fake devices (set before JAX starts); meshes use 2
of them unless a test is about sharding. Compiled programs are kept in a
persistent cache shared by the session's processes (xdist workers and the
subprocess tests).

Shared helpers: `tiny_config`, `trainer`, `sample_archs`, `run_steps`,
`write_teacher`; the
session fixture `tiny_run` is one finished tiny search that the golden,
resume, rescore and export tests all read."""

import os
import pathlib
import sys

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
# The suite is compile-bound (tiny networks, many programs): LLVM's
# optimisation of the CPU code is most of XLA's compile time and buys nothing
# at these sizes. Off, a tiny run takes 101 s instead of 144 s; its scores move
# by at most 2e-6 (well inside the golden test's 1e-5).
if '--xla_backend_optimization_level' not in os.environ['XLA_FLAGS']:
  os.environ['XLA_FLAGS'] += ' --xla_backend_optimization_level=0'
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# One persistent compilation cache for every process of the run (workers
# and subprocesses inherit the environment).
ROOT = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', str(ROOT / '.jax_cache'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.5')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / 'shared'

import numpy as np  # noqa: E402
import pytest  # noqa: E402

DEVICES = 2  # the default mesh of a test


def tiny_config(tmp_path=None, preset='tiny'):
  """configs/nats_cifar10.py:tiny; with tmp_path, on a 48-image npz of noise
  (3 steps per block)."""
  from bossnax.config import load_config_file
  c = load_config_file(str(ROOT / 'configs' / 'nats_cifar10.py') + ':' +
                       preset)
  c.num_devices = DEVICES
  if tmp_path is not None:
    rng = np.random.default_rng(0)
    path = tmp_path / 'tiny.npz'
    np.savez(path, x_train=rng.integers(0, 255, (48, 32, 32, 3), np.uint8),
             y_train=rng.integers(0, 10, 48), x_test=rng.integers(
                 0, 255, (32, 32, 32, 3), np.uint8),
             y_test=rng.integers(0, 10, 32))
    c.data.source = 'npz'
    c.data.path = str(path)
  return c


def trainer(config, devices=DEVICES, steps_per_epoch=4, image_shape=(32, 32, 3),
            space=None):
  """The engine's Trainer for `config`'s method."""
  from bossnax import parallel
  from bossnax.engine.supernet import Trainer
  return Trainer.from_config(config, parallel.make_mesh(devices),
                             steps_per_epoch, image_shape, space)


def sample_archs(tr, block, step, prefix):
  """The K paths [K, L] a run's step `step` of block `block` trains."""
  from bossnax.samplers import make_sampler
  space = tr.space
  prefix = np.asarray(prefix, np.int32)
  table = space.block_paths(block, space.unflatten(prefix)[:block])
  archs = np.tile(prefix, (tr.config.train.paths_per_step, 1))
  archs[:, space.block_slice(block)] = make_sampler(tr.config, space).sample(
      block, step, table)
  return archs


def batch(tr, n=16, seed=0, size=32):
  from bossnax import parallel
  x = np.random.default_rng(seed).integers(0, 255, (1, n, size, size, 3),
                                           np.uint8)
  return parallel.global_batch(tr.mesh, x, batch_axis=1)


def run_steps(tr, block, steps, prefix=None, state=None):
  """(state, metrics) after `steps` steps of block `block` from a fresh
  state (or `state`), on noise batches."""
  import jax
  state = tr.start_block(tr.init_state(0) if state is None else state, block)
  prefix = np.zeros(tr.space.num_layers, np.int32) if prefix is None else (
      prefix)
  key = jax.random.key(0)
  for s in range(steps):
    state, metrics = tr.step_fn(block)(state, batch(tr, seed=s), key,
                                       sample_archs(tr, block, s, prefix), None)
  return jax.device_get(state), jax.device_get(metrics)


def write_teacher(config, arch_text, out, seed=1):
  """An exported standalone network of `config`'s space (random weights) at
  `out`, as a method=dna teacher; returns `out`."""
  import json
  import jax
  import jax.numpy as jnp
  from bossnax import export
  from bossnax.nn import grouping
  from bossnax.spaces import make_space
  space = make_space(config.space)
  arch = space.from_string(arch_text)
  net, vec = space.standalone(arch)
  v = grouping.init(net, jax.random.key(seed), jnp.zeros((2, 32, 32, 3)),
                    jnp.asarray(vec), mode='train', output='logits')
  out.mkdir(parents=True, exist_ok=True)
  (out / 'spec.json').write_text(json.dumps(export.make_spec(
      config.space, space, arch)))
  export.save_weights(out / 'weights', v)
  return out


class Killed(Exception):
  """Raised by `kill_after`: the run stops as if its process died."""


def kill_after(monkeypatch, n):
  """Make every trainer's step raise Killed once `n` steps have run (undo
  with monkeypatch.undo() before resuming)."""
  from bossnax.engine.supernet import Trainer
  original, calls = Trainer.step_fn, {'n': 0}

  def step_fn(self, block):
    fn = original(self, block)

    def counted(*args):
      if calls['n'] == n:
        raise Killed()
      calls['n'] += 1
      return fn(*args)
    return counted
  monkeypatch.setattr(Trainer, 'step_fn', step_fn)


def cut_search(monkeypatch, config, workdir, n):
  """A search in `workdir` killed when `n` steps have run: the meta of the
  checkpoint it left (what a resume starts from)."""
  import pytest
  from bossnax.run import Run
  kill_after(monkeypatch, n)
  with pytest.raises(Killed):
    run_search(config, workdir)
  monkeypatch.undo()
  run = Run(config, str(workdir), write_metrics=False)
  try:
    return run.restore()[2]
  finally:
    run.close()


def run_search(config, workdir):
  """(final state, meta) of a whole search run in `workdir`."""
  import jax
  from bossnax.run import Run
  run = Run(config, str(workdir))
  try:
    state, meta = run.train_and_search()
  finally:
    run.close()
  return jax.device_get(state), meta


@pytest.fixture(scope='session')
def tiny_run(tmp_path_factory):
  """One finished search of configs/nats_cifar10.py:tiny (the embedded real
  images, three blocks): (config, workdir, final state, meta)."""
  c = tiny_config()
  workdir = tmp_path_factory.mktemp('tiny_run') / 'run'
  state, meta = run_search(c, workdir)
  return c, workdir, state, meta
