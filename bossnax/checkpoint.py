"""Orbax checkpoints of the run: a state pytree and a JSON meta per step.

All processes call every method together (Orbax coordinates multi-host
writes and barriers). A checkpoint that cannot be read (truncated or missing
files, a missing item, or a state saved by a config with another structure)
is skipped with a warning and the previous one is used, so a damaged save
loses at most one interval. Fallback decisions assume every process sees the
same files (a shared filesystem or object store), so they agree.
"""

from __future__ import annotations

import json
import logging
import os

import jax
import orbax.checkpoint as ocp

log = logging.getLogger('bossnax')


def _one_line(e, limit=300):
  text = ' '.join(str(e).split()) or type(e).__name__
  return text if len(text) <= limit else text[:limit] + '...'


def _key(entry):
  for attr in ('key', 'name', 'idx'):
    if hasattr(entry, attr):
      return str(getattr(entry, attr))
  return str(entry)


def _shapes(tree):
  """{'a/b/0': shape} for a template or an Orbax metadata tree."""
  flat, _ = jax.tree_util.tree_flatten_with_path(
      tree, is_leaf=lambda x: hasattr(x, 'shape'))
  return {'/'.join(_key(k) for k in path): tuple(getattr(leaf, 'shape', ()))
          for path, leaf in flat}


class Checkpointer:
  """Keeps the newest `max_to_keep` steps of ('state', 'meta') in a folder."""

  def __init__(self, directory, max_to_keep=3, save_interval_steps=1):
    directory = str(directory)
    # Orbax wants absolute paths; keep remote ones (gs://...) as they are.
    self.directory = directory if '://' in directory else os.path.abspath(
        directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, save_interval_steps=save_interval_steps,
        create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=('state', 'meta'))
    self._stale = []  # unreadable steps newer than the one restored

  def all_steps(self):
    return sorted(self._manager.all_steps())

  def save(self, step, state, meta, force=False):
    """Saves asynchronously; returns whether a save was started."""
    # Orbax skips any step <= the latest one on disk and never overwrites, so
    # unreadable newer steps left by restore_latest must go first.
    for bad in self._stale:
      if bad in self._manager.all_steps():
        log.warning('deleting unreadable checkpoint at step %d in %s', bad,
                    self.directory)
        self._manager.delete(bad)
    self._stale = []
    # A detached copy: the caller may mutate `meta` while the save runs, and
    # a value JSON cannot hold fails here rather than in a background thread.
    meta = json.loads(json.dumps(meta))
    return self._manager.save(
        int(step), args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
        force=force)

  def _meta(self, step):
    return self._manager.restore(
        step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']

  def _state(self, step, template):
    # strict: a changed shape is an error, not silent padding/truncation.
    return self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(template, strict=True)))['state']

  def _diagnose(self, step, template, error):
    """Why `step` failed, in words a user can act on."""
    try:
      md = self._manager.item_metadata(step)['state']
      saved = _shapes(getattr(md, 'tree', md))  # TreeMetadata or plain tree
      wanted = _shapes(template)
    except Exception:  # metadata unreadable too: report the original error
      saved = wanted = None
    if saved and wanted is not None and saved != wanted:
      diffs = [f'{k} missing from the checkpoint'
               for k in sorted(wanted.keys() - saved.keys())]
      diffs += [f'{k} not in the current state'
                for k in sorted(saved.keys() - wanted.keys())]
      diffs += [f'{k} saved {saved[k]} now {wanted[k]}'
                for k in sorted(wanted.keys() & saved.keys())
                if saved[k] != wanted[k]]
      more = f' (+{len(diffs) - 3} more)' if len(diffs) > 3 else ''
      return (f'checkpoint at step {step} does not match the current config: '
              + '; '.join(diffs[:3]) + more)
    return (f'checkpoint at step {step} is unreadable: '
            f'{type(error).__name__}: {_one_line(error)}')

  def _unreadable(self, steps, last_error):
    return RuntimeError(
        f'no checkpoint in {self.directory} can be read (steps {steps}; '
        f'{last_error}): delete that folder or use another --workdir')

  def restore_latest(self, state_template):
    """(step, state, meta) of the newest readable checkpoint, or None if the
    folder has none.

    `state_template`: the state's jax.ShapeDtypeStruct tree with shardings,
    so arrays come back directly on the right devices; or a function
    meta -> such a tree, for states whose structure depends on the meta.
    Raises RuntimeError when checkpoints exist but none can be read.
    """
    steps = self.all_steps()
    last = None
    for i, step in enumerate(reversed(steps)):
      template = None
      try:
        meta = self._meta(step)
        template = (state_template(meta) if callable(state_template)
                    else state_template)
        state = self._state(step, template)
      except Exception as e:  # any unreadable checkpoint: try the previous
        last = (self._diagnose(step, template, e) if template is not None
                else f'checkpoint at step {step} is unreadable: '
                f'{type(e).__name__}: {_one_line(e)}')
        log.warning('%s; trying the previous one', last)
        continue
      self._stale = steps[len(steps) - i:]
      return step, state, meta
    if steps:
      raise self._unreadable(steps, last)
    return None

  def restore_meta_latest(self):
    """(step, meta) of the newest checkpoint whose meta is readable, or None.

    Cheap: reads no arrays, e.g. to learn the block before building a
    template. The state of that step may still turn out unreadable.
    """
    steps = self.all_steps()
    last = None
    for step in reversed(steps):
      try:
        return step, self._meta(step)
      except Exception as e:
        last = (f'checkpoint at step {step} is unreadable: '
                f'{type(e).__name__}: {_one_line(e)}')
        log.warning('%s; trying the previous one', last)
    if steps:
      raise self._unreadable(steps, last)
    return None

  def wait(self):
    self._manager.wait_until_finished()

  def close(self):
    self._manager.close()
