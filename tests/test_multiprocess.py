"""Two local processes (two fake CPU devices each, gloo collectives) train
like one process with four devices: same parameters at the end."""

import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

WORKER = str(ROOT / 'tests' / 'multiprocess_worker.py')


def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path):
  rng = np.random.default_rng(0)
  npz = tmp_path / 'data.npz'
  np.savez(npz, x_train=rng.integers(0, 255, (64, 32, 32, 3), np.uint8),
           y_train=rng.integers(0, 10, 64),
           x_test=rng.integers(0, 255, (16, 32, 32, 3), np.uint8),
           y_test=rng.integers(0, 10, 16))
  port = str(_free_port())
  # Output to files, not pipes: a pipe read only after the other process
  # exits can fill up and block its writer, which then misses the
  # distributed shutdown barrier.
  logs = [open(tmp_path / f'process{i}.log', 'w') for i in range(2)]
  procs = [subprocess.Popen(
      [sys.executable, WORKER, str(i), '2', port, str(npz),
       str(tmp_path / 'two.npz')], stdout=logs[i],
      stderr=subprocess.STDOUT, text=True) for i in range(2)]
  for p, log in zip(procs, logs):
    p.wait(timeout=600)
    log.close()
  for i, p in enumerate(procs):
    out = (tmp_path / f'process{i}.log').read_text()
    assert p.returncode == 0, out[-3000:]
  one = subprocess.run([sys.executable, WORKER, '0', '1', '0', str(npz),
                        str(tmp_path / 'one.npz')], capture_output=True,
                       text=True, timeout=600)
  assert one.returncode == 0, one.stderr[-3000:]
  two, ref = np.load(tmp_path / 'two.npz'), np.load(tmp_path / 'one.npz')
  assert set(two.files) == set(ref.files) and len(ref.files) > 50
  for k in ref.files:
    np.testing.assert_allclose(two[k], ref[k], rtol=2e-4, atol=2e-5,
                               err_msg=k)
