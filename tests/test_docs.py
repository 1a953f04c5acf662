"""The README and docs stay true to the code: every config file and preset
they name loads, every `--config.KEY` they pass exists in the config of its
command line (and takes the value written there when it is a literal),
every script, config, doc and module they point to exists, and no draft
marker or figure placeholder is left in them.

Commands continued over lines with a backslash are read as one line. A
line without its own `--config=FILE` is checked against every config file:
the key must exist in one of them.
"""

import functools
import glob
import re

import pytest

from bossnax.config import ConfigError, flat_keys, load_config_file, set_override
from conftest import ROOT

DOCS = ['README.md'] + sorted(
    p.relative_to(ROOT).as_posix() for p in (ROOT / 'docs').glob('*.md'))
SCRIPTS = sorted(p.relative_to(ROOT).as_posix()
                 for d in ('benchmarks', 'launch', 'results/nats_cifar10')
                 for p in (ROOT / d).glob('*.sh'))

CONFIG_SPEC = re.compile(r'--config=(configs/\w+\.py(?::[\w,]+)?)')
OVERRIDE = re.compile(
    r'--config\.([\w.]*\w)(?:=("[^"]*"|\'[^\']*\'|[^\s\]`|;]*))?')
# Placeholders the docs write for "a value of yours".
PLACEHOLDER = re.compile(r'^(?:[A-Z][A-Z_]*|\.\.\.|x|KEY|VALUE|\w*\|\w*.*)$')
# Files of this repository the docs point to (not ../shared/..., not an
# upstream repository's path such as GAIA-ssl's configs/local/...).
REPO_PATH = re.compile(
    r'(?<![\w/.-])((?:configs/\w+\.py|benchmarks/\w+\.(?:py|sh)|docs/\w+\.md'
    r'|tests/\w+\.py|launch/\w+\.sh|results/\w+/\w+\.(?:py|sh)'
    r'|bossnax/(?:\w+/)*\w+\.py))')
MODULE = re.compile(r'python -m (bossnax(?:\.\w+)+)')


def _lines(path):
  text = (ROOT / path).read_text().replace('\\\n', ' ')
  return list(enumerate(text.splitlines(), 1))


@functools.lru_cache(maxsize=None)
def _config(spec):
  path, _, arg = spec.partition(':')
  return load_config_file(str(ROOT / path) + (f':{arg}' if arg else ''))


@functools.lru_cache(maxsize=None)
def _all_keys():
  keys = set()
  for path in glob.glob(str(ROOT / 'configs' / '*.py')):
    keys.update(flat_keys(load_config_file(path)))
  return keys


def _references():
  """(where, spec or None, key, value) of every override in the docs."""
  out = []
  for path in DOCS + SCRIPTS:
    for n, line in _lines(path):
      specs = CONFIG_SPEC.findall(line)
      for key, value in OVERRIDE.findall(line):
        out.append((f'{path}:{n}', specs, key, value.strip('"\'')))
  return out


@pytest.mark.parametrize('path', DOCS + SCRIPTS)
def test_every_config_file_and_preset_named_loads(path):
  for n, line in _lines(path):
    for spec in CONFIG_SPEC.findall(line):
      try:
        _config(spec)
      except ConfigError as e:
        pytest.fail(f'{path}:{n}: --config={spec}: {e}')


def test_every_override_in_the_docs_exists_and_takes_its_value():
  bad = []
  refs = _references()
  assert len(refs) > 100  # the parser still finds the docs' overrides
  for where, specs, key, value in refs:
    if PLACEHOLDER.match(key):
      continue
    if not specs:
      if key not in _all_keys():
        bad.append(f'{where}: --config.{key} is in no config file')
      continue
    for spec in specs:
      config = _config(spec)
      if key not in flat_keys(config):
        bad.append(f'{where}: --config.{key} is not a key of {spec}')
      elif value and not PLACEHOLDER.match(value) and '<' not in value:
        try:
          set_override(config.copy_and_resolve_references(), key, value)
        except ConfigError as e:
          bad.append(f'{where}: {e}')
  assert not bad, '\n'.join(bad)


def test_every_file_and_module_the_docs_name_exists():
  missing = []
  for path in DOCS:
    text = (ROOT / path).read_text()
    for ref in sorted(set(REPO_PATH.findall(text))):
      if not (ROOT / ref).exists():
        missing.append(f'{path}: {ref}')
    for module in sorted(set(MODULE.findall(text))):
      name = module.replace('.', '/')
      if not ((ROOT / f'{name}.py').exists() or (ROOT / name).is_dir()):
        missing.append(f'{path}: python -m {module}')
  assert not missing, '\n'.join(missing)


# What a draft leaves behind: a marker, or a figure's placeholder.
LEFTOVER = re.compile(r'\b(?:TODO|TBD|FIXME|XXX|[A-Z]+_(?:FIGURE|NOTE))\b')


def test_no_draft_leftovers():
  found = [f'{path}:{n}: {m}' for path in DOCS for n, line in _lines(path)
           for m in LEFTOVER.findall(line)]
  assert not found, '\n'.join(found)
  assert LEFTOVER.findall('took SUITE_FIGURE.') == ['SUITE_FIGURE']


def test_the_checks_catch_a_stale_key_and_a_missing_file(tmp_path):
  """The parsers find what a stale doc would hold (so the tests above can
  fail)."""
  line = ('python -m bossnax.main --config=configs/nats_cifar10.py:quick '
          '--config.train.paths_per_stepz=2 --config.train.fair=maybe')
  (spec,), overrides = CONFIG_SPEC.findall(line), OVERRIDE.findall(line)
  config = _config(spec)
  assert ('train.paths_per_stepz', '2') in overrides
  assert 'train.paths_per_stepz' not in flat_keys(config)
  with pytest.raises(ConfigError, match='takes a bool'):
    set_override(config.copy_and_resolve_references(), 'train.fair', 'maybe')
  refs = REPO_PATH.findall('see benchmarks/no_such.py and '
                           '../shared/benchmarks/x.csv and GAIA-ssl\'s '
                           'app/configs/local/y.py')
  assert refs == ['benchmarks/no_such.py']
