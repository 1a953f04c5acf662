"""What every entry point shares: logging, argument parsing, the global JAX
set-up, and bad input as one line `error: ...` with exit status 2."""

from __future__ import annotations

import sys

from bossnax.config import parse_args, setup_logging

# Errors that a user's input causes (a config value, a missing or corrupt
# file, a checkpoint of another format, memory): reported in one line.
USER_ERRORS = (ValueError, FileNotFoundError, RuntimeError, MemoryError,
               NotImplementedError)


def fail(e) -> int:
  print(f'error: {(str(e).strip().splitlines() or [repr(e)])[0]}',
        file=sys.stderr)
  return 2


def start_jax(config) -> None:
  """Global JAX configuration, once per process: the multi-host runtime
  (when the config or the cluster asks for it) and the compilation cache."""
  from bossnax import parallel
  parallel.maybe_initialize_distributed(config.distributed)
  parallel.enable_compilation_cache(config.compilation_cache_dir)


def run_main(body, argv, flags, jax=True) -> int:
  """Parse `argv` (flags: allowed names -> defaults, None = required), start
  JAX unless jax=False, run body(config, flags) -> exit status."""
  setup_logging()
  argv = sys.argv[1:] if argv is None else argv
  try:
    config, values = parse_args(argv, flags)
  except ValueError as e:  # ConfigError, or a preset's own check
    return fail(e)
  try:
    if jax:
      start_jax(config)
    return body(config, values)
  except USER_ERRORS as e:
    return fail(e)
