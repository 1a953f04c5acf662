"""Re-scoring a finished run: its own options reproduce its tables exactly
(finished blocks never move), other options change them."""

import numpy as np

from bossnax.rescore import rescore
from test_resume import _config, _run


def test_rescore_reproduces_the_run_and_variants_differ(tmp_path):
  c = _config(tmp_path)
  _, meta = _run(c, tmp_path / 'run')
  _, same, diff = rescore(c, str(tmp_path / 'run'), str(tmp_path / 'same'))
  assert diff < 1e-5
  for k, entries in meta['tables'].items():
    for a, b in zip(entries, same['tables'][k]):
      assert a['paths'] == b['paths']
      np.testing.assert_allclose(a['losses'], b['losses'], rtol=1e-5,
                                 atol=1e-6)
  assert (tmp_path / 'same' / 'scores.csv').exists()
  raw = c.copy_and_resolve_references()
  raw.search.centre = 'raw'
  raw.search.recalibrate_bn = False
  _, other, diff = rescore(raw, str(tmp_path / 'run'), str(tmp_path / 'raw'))
  assert diff > 1e-4
