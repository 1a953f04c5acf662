"""config.compilation_cache_dir fills a persistent XLA cache (in a fresh
process: the cache is global JAX state)."""

import os
import subprocess
import sys

from conftest import ROOT


def test_compilation_cache_dir_receives_compiled_programs(tmp_path):
  code = ('import jax, jax.numpy as jnp\n'
          'from bossnax import parallel\n'
          f'parallel.enable_compilation_cache({str(tmp_path)!r})\n'
          'jax.jit(lambda x: jnp.sin(x) * 2)(jnp.ones(3)).block_until_ready()\n')
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS='cpu')
  subprocess.run([sys.executable, '-c', code], check=True, env=env,
                 timeout=300)
  assert os.listdir(tmp_path), 'no cache entry written'
