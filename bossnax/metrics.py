"""Metrics and progress, written by process 0 only (others are no-ops).

metrics.jsonl gets one JSON object per logged step, appended so a resumed run
continues the same file; TensorBoard events too when tensorboardX imports.
`Progress` prints a bar with rate and ETA to stderr.
"""

from __future__ import annotations

import json
import os
import sys
import time

import jax
import numpy as np


def _plain(v):
  """A JSON value: numbers (jax/numpy scalars too) become floats."""
  if v is None or isinstance(v, (str, bool)):
    return v
  try:
    a = np.asarray(v)
  except Exception:
    return str(v)
  if a.dtype.kind in 'biuf':
    return float(a) if a.ndim == 0 else a.astype(float).tolist()
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
      except ImportError:  # optional dependency
        SummaryWriter = None
      if SummaryWriter is not None:
        self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def write(self, step, metrics, **tags):
    if not self.active:
      return
    values = {k: _plain(v) for k, v in metrics.items()}
    row = {'step': int(step), 'time': time.time(),
           **{k: (v if isinstance(v, (str, int, float, bool)) or v is None
                  else str(v)) for k, v in tags.items()},
           **values}
    self._file.write(json.dumps(row) + '\n')
    self._file.flush()  # a killed run keeps what it logged
    if self._tb is not None:
      for k, v in values.items():
        if isinstance(v, float):
          self._tb.add_scalar(k, v, int(step))

  def close(self):
    if self._file is not None:
      self._file.close()
      self._file = None
    if self._tb is not None:
      self._tb.close()
      self._tb = None


def _duration(seconds):
  seconds = int(max(0, seconds))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f'{h}h{m:02d}m' if h else (f'{m}m{s:02d}s' if m else f'{s}s')


class Progress:
  """`[block 1/3] 120/500 (24%) 3.2 it/s ETA 1m58s loss=1.234`."""

  def __init__(self, total_steps, desc, every_seconds=5.0, file=None,
               start_step=0):
    self.total, self.desc, self.every = total_steps, desc, every_seconds
    # Looked up now, not at import, so redirected/captured stderr is used.
    self.file = file if file is not None else sys.stderr
    self.active = jax.process_index() == 0
    self.start_step, self.start = start_step, time.monotonic()
    self._last = None
    isatty = getattr(self.file, 'isatty', None)
    self._tty = bool(isatty and isatty())
    self._width = 0

  def update(self, step, **postfix):
    if not self.active:
      return
    now = time.monotonic()
    final = step >= self.total
    if (not final and self._last is not None
        and now - self._last < self.every):
      return
    self._last = now
    rate = (step - self.start_step) / max(now - self.start, 1e-9)
    eta = _duration((self.total - step) / rate) if rate > 0 else '?'
    extra = ''.join(
        f' {k}={v:.4g}' if isinstance(v, float) else f' {k}={v}'
        for k, v in ((k, _plain(v)) for k, v in postfix.items()))
    pct = 100 * step / max(self.total, 1)
    line = (f'[{self.desc}] {step}/{self.total} ({pct:.0f}%) {rate:.1f} it/s '
            f'ETA {eta}{extra}')
    if self._tty:  # redraw in place; pad over a longer previous line
      pad = ' ' * max(0, self._width - len(line))
      self._width = len(line)
      self.file.write('\r' + line + pad + ('\n' if final else ''))
    else:
      self.file.write(line + '\n')
    self.file.flush()
