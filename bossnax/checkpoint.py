"""Orbax checkpoints of a run: a state pytree and a JSON meta per step.

All processes call save and restore together (Orbax coordinates multi-host
writes). A checkpoint that cannot be read (truncated, corrupt, or saved by a
config whose state has another structure) is skipped with a warning and the
previous one is used, so a crash during a save loses at most one interval.
A checkpoint whose meta names another format (or none: written before
formats were recorded) is refused with one line.
"""

from __future__ import annotations

import logging

log = logging.getLogger('bossnax')
import os

import orbax.checkpoint as ocp


class Checkpointer:

  def __init__(self, directory, max_to_keep=3, format=None):
    self.directory = os.path.abspath(directory)
    self.format = format
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                           create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=('state', 'meta'))

  def save(self, step, state, meta, force=False):
    return self._manager.save(
        step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                      meta=ocp.args.JsonSave(meta)),
        force=force)

  def all_steps(self):
    return sorted(self._manager.all_steps())

  def restore_latest(self, template):
    """(step, state, meta) of the newest readable checkpoint, or None.

    `template`: the state's jax.ShapeDtypeStruct tree with shardings, so
    arrays come back directly on the right devices.
    """
    steps = self.all_steps()
    for step in reversed(steps):
      if self.format is not None:
        self._check_format(step)
      try:
        out = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(template),
            meta=ocp.args.JsonRestore()))
        # Orbax skips saves at or below the newest step on disk: drop the
        # unreadable newer ones so the resumed run can save over them.
        for bad in (s for s in steps if s > step):
          self._manager.delete(bad)
        return step, out['state'], out['meta']
      except Exception as e:  # any unreadable checkpoint: try the previous
        first = (str(e).strip().splitlines() or [repr(e)])[0][:300]
        log.warning('checkpoint at step %d in %s is unreadable or does '
                        'not match the current config (%s); trying the '
                        'previous one', step, self.directory, first)
    if steps:
      raise RuntimeError(
          f'no checkpoint in {self.directory} can be read (steps {steps}): '
          'delete that folder or use another --workdir')
    return None

  def _check_format(self, step):
    try:
      meta = self._manager.restore(step, args=ocp.args.Composite(
          meta=ocp.args.JsonRestore()))['meta']
    except Exception:  # unreadable: restore_latest warns and falls back
      return
    found = meta.get('format') if isinstance(meta, dict) else None
    if found != self.format:
      raise ValueError(
          f'the checkpoint at step {step} in {self.directory} comes from an '
          f'older bossnax format ({found or "no format recorded"}, this '
          f'version reads {self.format}): start again with another --workdir'
          ' or resume it with the bossnax version that wrote it')

  def wait(self):
    self._manager.wait_until_finished()

  def close(self):
    self._manager.close()
