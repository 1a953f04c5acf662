"""Re-scoring a finished run (the session's tiny run): its own options
reproduce its tables exactly (finished blocks never move), other options
change them; export cuts the best path's weights out of it."""

import json

import numpy as np
import pytest

from bossnax.rescore import rescore

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group('tiny_run')]


def test_rescore_reproduces_the_run_and_variants_differ(tiny_run, tmp_path):
  c, workdir, _, meta = tiny_run
  _, same, diff = rescore(c, str(workdir), str(tmp_path / 'same'))
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
  _, other, diff = rescore(raw, str(workdir), str(tmp_path / 'raw'))
  assert diff > 1e-4


def test_export_of_the_best_path_equals_the_supernet(tiny_run, tmp_path):
  """`bossnax.export` on the finished run: spec.json names the searcher's
  best path, and the standalone network with the exported weights gives
  the supernet's logits on it."""
  import jax
  import jax.numpy as jnp
  from bossnax import export
  from bossnax.spaces import make_space
  c, workdir, state, meta = tiny_run
  spec = export.export(c, str(workdir), str(tmp_path / 'best'))
  space = make_space(c.space)
  assert spec['arch'] == space.to_string(
      tuple(np.asarray(p) for p in meta['pool'][0][0]))
  assert json.loads((tmp_path / 'best' / 'spec.json').read_text()) == spec
  space2, arch, _ = export.load_spec(tmp_path / 'best' / 'spec.json')
  net, vec = space2.standalone(arch)
  weights = export.load_weights(tmp_path / 'best' / 'weights', net, vec, 32)
  x = jax.random.normal(jax.random.key(0), (4, 32, 32, 3))
  got = net.apply(weights, x, vec, mode='eval', output='logits')
  supernet = space.supernet(c.model.embed_dim)
  variables = {k: v['backbone'] for k, v in (('params', state['params']),
                                               ('batch_stats',
                                                state['batch_stats']))}
  want = supernet.apply(variables, x, jnp.asarray(space.flatten(arch)),
                        mode='eval', output='logits')
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
