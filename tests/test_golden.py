"""Nothing BossNAS computes changed in the engine reshape: the tiny preset's
block score tables and scores.csv equal those stored in tests/golden/ by the
code before it (commit d69851a, `python -m bossnax.main
--config=configs/nats_cifar10.py:tiny`)."""

import csv
import json

import numpy as np
import pytest

from bossnax.run import write_results
from conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group('tiny_run')]
GOLDEN = ROOT / 'tests' / 'golden'


def test_tiny_run_reproduces_the_golden_tables_and_scores(tiny_run, tmp_path):
  c, _, _, meta = tiny_run
  golden = json.loads((GOLDEN / 'nats_tiny_run.json').read_text())
  assert meta['pool'][0][0] == golden['pool'][0][0]
  for k, entries in golden['tables'].items():
    for want, got in zip(entries, meta['tables'][k], strict=True):
      assert (got['prefix'], got['paths']) == (want['prefix'], want['paths'])
      np.testing.assert_allclose(got['losses'], want['losses'], rtol=0,
                                 atol=1e-5)
  write_results(c, _space(c), meta, str(tmp_path))
  read = lambda p: {r['arch']: float(r['score'])
                    for r in csv.DictReader(open(p))}
  want, got = read(GOLDEN / 'nats_tiny_scores.csv'), read(
      tmp_path / 'scores.csv')
  assert want.keys() == got.keys() and len(got) == 32
  assert max(abs(want[a] - got[a]) for a in want) <= 1e-5


def _space(c):
  from bossnax.spaces import make_space
  return make_space(c.space)
