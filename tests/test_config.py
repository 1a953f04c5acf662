"""Config files and overrides: good values apply, bad ones fail in one line."""

import subprocess
import sys

import pytest

from bossnax.config import ConfigError, parse_args
from conftest import ROOT

CFG = str(ROOT / 'configs' / 'nats_cifar10.py')


def test_overrides_apply_with_types():
  c, flags = parse_args([f'--config={CFG}:quick', '--workdir=/tmp/x',
                         '--config.train.paths_per_step=2',
                         '--config.train.lr=1', '--config.train.fair=false',
                         '--config.data.path=/d/x.npz',
                         '--config.search.lambdas=(1.0,2.0,0.5)'], {
                             'workdir': None})
  assert c.train.paths_per_step == 2
  assert c.train.lr == 1.0 and isinstance(c.train.lr, float)
  assert c.train.fair is False
  assert c.search.lambdas == (1.0, 2.0, 0.5)
  assert flags['workdir'] == '/tmp/x'


@pytest.mark.parametrize('arg,msg', [
    ('--config.train.path_per_step=2', "did you mean 'train.paths_per_step'"),
    ('--config.trian.lr=2', "did you mean 'train.lr'"),
    ('--config.train.paths_per_step=two', 'takes a int'),
    ('--config.train=3', 'is a group'),
])
def test_bad_override_names_the_fix(arg, msg):
  with pytest.raises(ConfigError, match=msg.replace('(', r'\(')):
    parse_args([f'--config={CFG}', arg, '--workdir=/tmp/x'],
               {'workdir': None})


def test_every_config_file_loads():
  for name in ('nats_cifar10.py', 'nats_cifar10.py:quick',
               'nats_cifar10.py:tiny', 'nats_cifar100.py'):
    c, _ = parse_args([f'--config={ROOT / "configs" / name}'], {})
    assert c.space.name == 'nats'


def test_main_reports_one_line_error():
  out = subprocess.run(
      [sys.executable, '-m', 'bossnax.main', f'--config={CFG}',
       '--workdir=/tmp/bossnax_x', '--config.train.batchsize=3'],
      capture_output=True, text=True, cwd=ROOT, timeout=120)
  assert out.returncode == 2
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and "did you mean 'train.batch_size'" in lines[0]
