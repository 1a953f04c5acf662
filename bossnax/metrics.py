"""Metrics and progress, written by process 0 only.

metrics.jsonl gets one JSON object per logged step (appended, so a resumed
run continues the same file); TensorBoard events too when tensorboardX is
installed. `Progress` prints a bar with rate and ETA to stderr.
"""

from __future__ import annotations

import json
import os
import sys
import time

import jax
import numpy as np


def _plain(v):
  if isinstance(v, (str, bool, int)) or v is None:
    return v
  try:
    return float(np.asarray(v))
  except (TypeError, ValueError):
    return str(v)


class MetricWriter:

  def __init__(self, workdir, tensorboard=True):
    self.active = jax.process_index() == 0
    self._file = self._tb = None
    if not self.active:
      return
    os.makedirs(workdir, exist_ok=True)
    self._file = open(os.path.join(workdir, 'metrics.jsonl'), 'a')
    if tensorboard:
      try:
        from tensorboardX import SummaryWriter
        self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'))
      except ImportError:
        self._tb = None

  def write(self, step, metrics, **tags):
    if not self.active:
      return
    row = {'step': int(step), 'time': time.time()}
    row.update({k: _plain(v) for k, v in {**tags, **metrics}.items()})
    self._file.write(json.dumps(row) + '\n')
    self._file.flush()
    if self._tb is not None:
      for k, v in metrics.items():
        v = _plain(v)
        if isinstance(v, float):
          self._tb.add_scalar(k, v, int(step))

  def close(self):
    if self._file:
      self._file.close()
    if self._tb is not None:
      self._tb.close()


def _fmt_time(seconds):
  seconds = int(max(0, seconds))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f'{h}h{m:02d}m' if h else (f'{m}m{s:02d}s' if m else f'{s}s')


class Progress:
  """`[block 1/3] 120/500 (24%) 3.2 it/s ETA 1m58s loss=1.234`."""

  def __init__(self, total_steps, desc, every_seconds=5.0, file=None,
               start_step=0):
    self.total, self.desc, self.every = total_steps, desc, every_seconds
    self.file = file or sys.stderr
    self.active = jax.process_index() == 0
    self.start_step, self.start = start_step, time.time()
    self._last = 0.0

  def update(self, step, **postfix):
    if not self.active:
      return
    now = time.time()
    if now - self._last < self.every and step < self.total:
      return
    self._last = now
    rate = (step - self.start_step) / max(now - self.start, 1e-9)
    eta = (self.total - step) / rate if rate > 0 else 0
    extra = ' '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}'
                     for k, v in postfix.items())
    print(f'[{self.desc}] {step}/{self.total} ({100 * step / self.total:.0f}%)'
          f' {rate:.2f} it/s ETA {_fmt_time(eta)} {extra}'.rstrip(),
          file=self.file, flush=True)
