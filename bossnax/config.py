"""Config files and command-line overrides.

A config file defines `get_config(arg=None)` returning an ml_collections
ConfigDict; `path/to/file.py:arg` passes `arg` (e.g. a preset name).
Overrides are `--config.a.b=value`. An unknown key or a value of the wrong
type fails at once with one line that names the closest valid key.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import logging
import os

import ml_collections


def setup_logging():
  """Entry points: bossnax speaks at INFO; libraries (Orbax, absl) only when
  something is wrong."""
  logging.basicConfig(level=logging.WARNING, format='%(asctime)s %(message)s')
  logging.getLogger('bossnax').setLevel(logging.INFO)
  try:
    import absl.logging
    absl.logging.set_verbosity(absl.logging.WARNING)
  except ImportError:
    pass



class ConfigError(ValueError):
  """A bad config file, key or value (message is one line)."""


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  path, _, arg = spec.partition(':')
  if not os.path.isfile(path):
    raise ConfigError(f'config file {path!r} not found: pass '
                      '--config=configs/nats_cifar10.py (or another file in '
                      'configs/)')
  module_spec = importlib.util.spec_from_file_location('_bossnax_config', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, 'get_config'):
    raise ConfigError(f'{path} has no get_config() function')
  try:
    config = module.get_config(arg) if arg else module.get_config()
  except TypeError:
    raise ConfigError(f'{path} takes no argument; drop ":{arg}"') from None
  return config


def _flat(tree, prefix=''):
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flat(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def record_run_config(workdir: str, config) -> list[str]:
  """Write WORKDIR/config.json; where one is there already (a resumed
  run), first say in one warning which settings changed since, so a run
  never mixes two recipes unnoticed. Returns the changes, 'key: old ->
  new'."""
  import json
  path = os.path.join(workdir, 'config.json')
  new = json.loads(config.to_json_best_effort())
  changes = []
  if os.path.isfile(path):
    try:
      with open(path) as f:
        old = json.load(f)
    except (OSError, ValueError):
      old = None  # unreadable: written again below
    if isinstance(old, dict):
      old, flat = _flat(old), _flat(new)
      changes = [f'{k}: {old.get(k, "(absent)")!r} -> '
                 f'{flat.get(k, "(absent)")!r}'
                 for k in sorted(set(old) | set(flat))
                 if k in old and old[k] != flat.get(k, '(absent)')]
      added = sorted(set(flat) - set(old))
      log = logging.getLogger('bossnax')
      if changes:
        log.warning('%s was started with other settings; it goes on with '
                    'these: %s (pass the old values to continue as it '
                    'began)', workdir, '; '.join(changes))
      if added:  # settings that came with a newer bossnax: their defaults
        log.info('%s: settings new since it began, at their values: %s',
                 workdir, '; '.join(f'{k}={flat[k]!r}' for k in added))
  with open(path, 'w') as f:
    json.dump(new, f, indent=1)
  return changes


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a `python -m bossnax.main` run wrote to WORKDIR/config.json
  (JSON lists back to the tuples the configs use: they key compiled
  programs, so must be hashable)."""
  import json
  path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(path):
    raise ConfigError(f'{workdir} has no config.json: pass the workdir of a '
                      'python -m bossnax.main run')
  try:
    with open(path) as f:
      raw = json.load(f)
  except ValueError as e:
    raise ConfigError(f'{path} is not JSON ({e}): the run wrote it; restore '
                      'it or rerun') from None
  tuples = lambda v: (tuple(tuples(x) for x in v) if isinstance(v, list)
                      else {k: tuples(x) for k, x in v.items()}
                      if isinstance(v, dict) else v)
  return ml_collections.ConfigDict(tuples(raw))


def flat_keys(config, prefix='') -> list[str]:
  keys = []
  for k, v in config.items():
    name = f'{prefix}{k}'
    keys.append(name)
    if isinstance(v, ml_collections.ConfigDict):
      keys.extend(flat_keys(v, name + '.'))
  return keys


def _closest(key, config):
  match = difflib.get_close_matches(key, flat_keys(config), n=1, cutoff=0.4)
  return f'; did you mean {match[0]!r}?' if match else ''


def parse_value(text: str):
  """Python literal if it parses as one, else the string itself."""
  if text in ('true', 'True'):
    return True
  if text in ('false', 'False'):
    return False
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def set_override(config, key: str, text: str) -> None:
  *parents, leaf = key.split('.')
  node = config
  for i, part in enumerate(parents):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      raise ConfigError(f'unknown config key {key!r}{_closest(key, config)}')
    node = node[part]
  if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
    raise ConfigError(f'unknown config key {key!r}{_closest(key, config)}')
  old = node[leaf]
  if isinstance(old, ml_collections.ConfigDict):
    raise ConfigError(f'config key {key!r} is a group; set one of its fields, '
                      f'e.g. {key}.{next(iter(old.keys()), "x")}=...')
  value = parse_value(text)
  if isinstance(old, str) and not isinstance(value, str):
    value = text  # strings that happen to parse as numbers stay strings
  if isinstance(old, float) and isinstance(value, int) and not isinstance(
      value, bool):
    value = float(value)
  if isinstance(old, tuple) and isinstance(value, list):
    value = tuple(value)
  if isinstance(old, tuple) and isinstance(value, (int, float)):
    value = (value,)
  if old is not None and type(value) is not type(old):
    raise ConfigError(
        f'config key {key!r} takes a {type(old).__name__} (now {old!r}); got '
        f'{text!r}')
  try:
    node[leaf] = value
  except (TypeError, ValueError) as e:
    raise ConfigError(f'config key {key!r}: {e}'.splitlines()[0]) from None


def apply_overrides(config, overrides: list[str]):
  for item in overrides:
    key, sep, text = item.partition('=')
    if not sep:
      raise ConfigError(f'override {item!r} has no value: write '
                        f'--config.{key}=VALUE')
    set_override(config, key, text)
  return config


def parse_args(argv: list[str], extra_flags: dict[str, str]):
  """Split `--config=FILE[:arg]`, `--config.k=v` and other `--name=v` flags.

  Returns (config, flags dict). `extra_flags` maps allowed flag names to
  their defaults (None = required).
  """
  spec, overrides, flags = None, [], {}
  for arg in argv:
    if not arg.startswith('--'):
      raise ConfigError(f'unexpected argument {arg!r}: flags look like '
                        '--name=value')
    name, sep, value = arg[2:].partition('=')
    if name == 'config':
      spec = value
    elif name.startswith('config.'):
      overrides.append(f'{name[len("config."):]}={value}' if sep else name)
    elif name in extra_flags:
      flags[name] = value if sep else 'true'
    else:
      known = ['config'] + list(extra_flags)
      match = difflib.get_close_matches(name, known, n=1)
      hint = f'; did you mean --{match[0]}?' if match else ''
      raise ConfigError(f'unknown flag --{name}{hint}')
  if spec is None:
    raise ConfigError('pass --config=configs/nats_cifar10.py (a config file, '
                      'optionally with :preset)')
  for name, default in extra_flags.items():
    if name not in flags:
      if default is None:
        raise ConfigError(f'pass --{name}=...')
      flags[name] = default
  config = load_config_file(spec)
  apply_overrides(config, overrides)
  return config, flags
