"""MetricWriter (JSON lines, process 0 only) and Progress (rate, ETA)."""

import io
import json

import jax
import jax.numpy as jnp
import numpy as np

from bossnax import metrics
from bossnax.metrics import MetricWriter, Progress


def test_writes_json_lines_with_floats_and_appends(tmp_path):
  w = MetricWriter(tmp_path, tensorboard=True)
  w.write(1, {'loss': jnp.float32(1.5), 'lr': np.float64(0.1), 'n': 3},
          block=0)
  w.close()
  w = MetricWriter(tmp_path, tensorboard=False)  # a resumed run appends
  w.write(2, {'loss': jnp.array(0.25), 'hist': np.array([1, 2])}, block=1,
          best_path='[0, 1]')
  w.close()
  rows = [json.loads(l) for l in open(tmp_path / 'metrics.jsonl')]
  assert [r['step'] for r in rows] == [1, 2]
  assert rows[0]['loss'] == 1.5 and type(rows[0]['loss']) is float
  assert rows[0]['lr'] == 0.1 and rows[0]['n'] == 3.0 and rows[0]['block'] == 0
  assert rows[1]['hist'] == [1.0, 2.0] and rows[1]['best_path'] == '[0, 1]'
  assert all(isinstance(r['time'], float) for r in rows)
  assert list((tmp_path / 'tensorboard').iterdir())  # event file


def test_only_process_zero_writes(tmp_path, monkeypatch):
  monkeypatch.setattr(jax, 'process_index', lambda: 1)
  w = MetricWriter(tmp_path / 'run')
  w.write(1, {'loss': 1.0})
  w.close()
  assert not (tmp_path / 'run').exists()
  out = io.StringIO()
  Progress(10, 'block 1/1', file=out).update(10, loss=1.0)
  assert out.getvalue() == ''


def test_progress_prints_eta_and_final_line(monkeypatch):
  now = [100.0]
  monkeypatch.setattr(metrics.time, 'monotonic', lambda: now[0])
  out = io.StringIO()  # not a tty: one line per print
  p = Progress(500, 'block 1/3', every_seconds=5.0, file=out, start_step=0)
  now[0] += 37.5
  p.update(120, loss=jnp.float32(1.2344))
  now[0] += 1.0
  p.update(121, loss=1.0)  # within every_seconds: silent
  now[0] += 100.0
  p.update(500, loss=0.5)  # the last step always prints
  lines = out.getvalue().splitlines()
  assert lines == [
      '[block 1/3] 120/500 (24%) 3.2 it/s ETA 1m58s loss=1.234',
      '[block 1/3] 500/500 (100%) 3.6 it/s ETA 0s loss=0.5']


def test_progress_redraws_in_place_on_a_tty():
  class Tty(io.StringIO):
    def isatty(self):
      return True
  out = Tty()
  p = Progress(2, 'b', every_seconds=0.0, file=out, start_step=1)
  p.update(1)
  p.update(2)
  text = out.getvalue()
  assert text.startswith('\r[b] 1/2 (50%)') and text.endswith('\n')
  assert text.count('\r') == 2 and text.count('\n') == 1
