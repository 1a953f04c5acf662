"""What BossNAS computes is pinned: the tiny preset's block score tables and
scores.csv equal those in tests/golden/ (tests/golden/make_golden.py, with
the defaults since the official conv init and per-width LARS trust ratios),
and the old settings (`space.conv_init=he_fan_out`,
`train.lars_per_row=False`) still give block 0 of tests/golden/old_defaults/, written
by the code before the engine reshape (commit d69851a, `python -m
bossnax.main --config=configs/nats_cifar10.py:tiny`)."""

import csv
import dataclasses
import json

import numpy as np
import pytest

from bossnax.run import Run, write_results
from conftest import ROOT, tiny_config

pytestmark = pytest.mark.slow
GOLDEN = ROOT / 'tests' / 'golden'


def _check(c, meta, golden_dir, tmp_path):
  golden = json.loads((golden_dir / 'nats_tiny_run.json').read_text())
  assert meta['pool'][0][0] == golden['pool'][0][0]
  for k, entries in golden['tables'].items():
    for want, got in zip(entries, meta['tables'][k], strict=True):
      assert (got['prefix'], got['paths']) == (want['prefix'], want['paths'])
      np.testing.assert_allclose(got['losses'], want['losses'], rtol=0,
                                 atol=1e-5)
  write_results(c, _space(c), meta, str(tmp_path))
  read = lambda p: {r['arch']: float(r['score'])
                    for r in csv.DictReader(open(p))}
  want, got = read(golden_dir / 'nats_tiny_scores.csv'), read(
      tmp_path / 'scores.csv')
  assert want.keys() == got.keys() and len(got) == 32
  assert max(abs(want[a] - got[a]) for a in want) <= 1e-5
  return golden


@pytest.mark.xdist_group('tiny_run')
def test_tiny_run_reproduces_the_golden_tables_and_scores(tiny_run, tmp_path):
  c, _, _, meta = tiny_run
  golden = _check(c, meta, GOLDEN, tmp_path)
  old = json.loads((GOLDEN / 'old_defaults' / 'nats_tiny_run.json')
                   .read_text())
  # the new defaults change what is computed
  assert golden['tables']['0'][0]['losses'] != old['tables']['0'][0]['losses']


def test_old_settings_reproduce_the_old_golden(tmp_path):
  # Block 0 only (the two switches act from the first step; later blocks
  # run the same code as the new defaults, pinned above): a third of a run.
  # Its own run, not in the tiny_run group, so the other worker takes it.
  c = tiny_config()
  c.space.conv_init = 'he_fan_out'
  c.train.lars_per_row = False
  run = Run(c, str(tmp_path / 'run'))
  run.method = dataclasses.replace(run.method,
                                   stages=run.method.stages[:1])
  try:
    _, meta = run.train_and_search()
  finally:
    run.close()
  golden = json.loads((GOLDEN / 'old_defaults' / 'nats_tiny_run.json')
                      .read_text())
  assert list(meta['tables']) == ['0']
  for want, got in zip(golden['tables']['0'], meta['tables']['0'],
                       strict=True):
    assert (got['prefix'], got['paths']) == (want['prefix'], want['paths'])
    np.testing.assert_allclose(got['losses'], want['losses'], rtol=0,
                               atol=1e-5)


def _space(c):
  from bossnax.spaces import make_space
  return make_space(c.space)
