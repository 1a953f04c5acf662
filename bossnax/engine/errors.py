"""Errors of a running job, reworded as one line that names the fix."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def out_of_memory_names(where, fix):
  """Rewords an accelerator (or host) out-of-memory error as one line naming
  the knobs that fix it; any other error passes unchanged."""
  try:
    yield
  except Exception as e:  # noqa: BLE001 (re-raised)
    text = str(e)
    if 'RESOURCE_EXHAUSTED' not in text and 'Out of memory' not in text:
      raise
    raise MemoryError(f'out of memory {where}: {fix}; run the same command '
                      'again to resume from the last checkpoint') from e
