"""Config files and overrides: good values apply, bad ones fail in one line."""

import subprocess
import sys

import pytest

from bossnax import defaults
from bossnax.config import ConfigError, flat_keys, load_config_file, parse_args
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


PRESETS = {  # every config file and its presets
    'nats_cifar10.py': ('', 'quick', 'tiny', 'real'),
    'nats_cifar100.py': ('', 'quick', 'tiny', 'real'),
    'hytra_cifar.py': ('', 'real', 'tiny'),
    'hytra_imagenet.py': ('',),
    'mbconv_cifar.py': ('', 'quick', 'tiny'),
    'mbconv_imagenet.py': ('', 'dna'),
    'greedynas_cifar.py': ('', 'quick', 'tiny'),
    'greedynas_imagenet.py': ('',),
    'autoformer_cifar.py': ('', 'quick', 'tiny', 'quick,paper_mutation'),
    'autoformer_imagenet.py': ('', 'T', 'S', 'B', 'T,paper_mutation'),
    'data_cifar.py': ('', 'quick', 'tiny'),
    'data_imagenet.py': ('', 'byol'),
    'retrain_hytra.py': ('', 'cifar', 'tiny', 'tiny_hytra', 'nats',
                         'nats_quick', 'mbconv_quick_teacher',
                         'mbconv_tiny_teacher', 'hytra_tiny_teacher'),
}


def test_presets_list_every_config_file():
  assert set(PRESETS) == {p.name for p in (ROOT / 'configs').glob('*.py')}


@pytest.mark.parametrize('name,preset', [
    (name, preset) for name, presets in PRESETS.items() for preset in presets])
def test_every_config_file_loads(name, preset):
  spec = f'{ROOT / "configs" / name}' + (f':{preset}' if preset else '')
  c, _ = parse_args([f'--config={spec}'], {})
  tiny_nats = name == 'retrain_hytra.py' and preset in ('tiny', 'nats',
                                                        'nats_quick')
  assert c.space.name == ('nats' if name.startswith('nats') or tiny_nats
                          else 'mbconv' if name.startswith(('mbconv', 'greedynas'))
                          or preset.startswith('mbconv') else 'vit' if
                          name.startswith('autoformer') else 'dynresnet' if
                          name.startswith('data') else 'hytra')
  if name.startswith('retrain'):
    assert 'method' not in c
  else:  # one schema for every search run (the space's fields aside)
    assert c.method == ('dna' if preset == 'dna' else 'greedynas' if
                        name.startswith('greedynas') else 'autoformer' if
                        name.startswith('autoformer') else 'data' if
                        name.startswith('data') else 'bossnas')
    search_keys = lambda c: {k for k in flat_keys(c)
                             if not k.startswith('space.')}
    assert search_keys(c) == search_keys(defaults.search_config())


def test_unknown_preset_fails():
  for name in PRESETS:
    with pytest.raises(ValueError, match='unknown preset'):
      load_config_file(f'{ROOT / "configs" / name}:nope')


def test_config_files_share_code_through_bossnax_defaults():
  """A config file imports bossnax.defaults; loading another config file
  (importlib, load_config_file) would hide where a value comes from."""
  for path in (ROOT / 'configs').glob('*.py'):
    text = path.read_text()
    for word in ('importlib', 'load_config_file', 'exec_module'):
      assert word not in text, f'{path.name} uses {word}'


def test_main_reports_one_line_error():
  out = subprocess.run(
      [sys.executable, '-m', 'bossnax.main', f'--config={CFG}',
       '--workdir=/tmp/bossnax_x', '--config.train.batchsize=3'],
      capture_output=True, text=True, cwd=ROOT, timeout=120)
  assert out.returncode == 2
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and "did you mean 'train.batch_size'" in lines[0]


def test_a_resumed_run_says_which_settings_changed(tmp_path, caplog):
  """config.json of a workdir: written as the config; started again with
  other overrides, one warning lists each changed key (old -> new) before
  the run goes on, and the file then holds the new settings."""
  import json
  from bossnax.config import load_run_config, record_run_config
  c = load_config_file(f'{CFG}:quick')
  assert record_run_config(str(tmp_path), c) == []
  assert load_run_config(str(tmp_path)).train.paths_per_step == (
      c.train.paths_per_step)
  assert record_run_config(str(tmp_path), c) == []  # same settings: quiet
  d = load_config_file(f'{CFG}:quick')
  d.train.repeated_aug, d.augment.ops = 3, 'crop_flip,randaug'
  changes = record_run_config(str(tmp_path), d)
  assert changes == ["augment.ops: 'crop_flip' -> 'crop_flip,randaug'",
                     'train.repeated_aug: 1 -> 3']
  assert 'other settings' in caplog.text and '1 -> 3' in caplog.text
  assert '\n' not in caplog.records[-1].getMessage()
  saved = json.loads((tmp_path / 'config.json').read_text())
  assert saved['train']['repeated_aug'] == 3
  # a setting the old file lacks (a newer bossnax) is not a change
  del saved['train']['repeated_aug']
  (tmp_path / 'config.json').write_text(json.dumps(saved))
  assert record_run_config(str(tmp_path), d) == []
  for junk in ('[]', 'null', '{not json'):  # unreadable: written again
    (tmp_path / 'config.json').write_text(junk)
    assert record_run_config(str(tmp_path), d) == []
    assert load_run_config(str(tmp_path)).train.repeated_aug == 3
