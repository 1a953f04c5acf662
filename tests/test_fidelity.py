"""The switches that bring the NATS supernet in line with the official code
(issue 13): conv init statistics, a LARS trust ratio per width adapter, the
learning-rate budget, the predictor's BN at scoring and the projection
skip's ReLU."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bossnax import defaults
from bossnax.engine.supernet import OptimizerSpec, peak_lr, trust_ratio_per_row
from bossnax.nn import grouping
from bossnax.objectives.ensemble import EnsembleBootstrap
from bossnax.spaces.nats import NATSSpace

WIDTHS = (8, 16, 24, 32, 40, 48, 56, 64)


def _init(space, embed=64):
  # eager: op by op compiles faster on the CPU than the whole init at once
  x = jnp.zeros((2, 8, 8, 3))
  arch = jnp.asarray(space.flatten(space.default_arch()))
  return grouping.init(space.supernet(embed), jax.random.key(0), x,
                       arch)['params']


@pytest.mark.parametrize('conv_init', ['torch', 'he_fan_out'])
def test_conv_init_statistics(conv_init):
  """'torch' is PyTorch's default (uniform, variance 1 / (3 fan_in)): std
  0.072 for the residual shortcut's 1x1 conv from 64 channels, and each
  width adapter row drawn as a conv reading only its width; 'he_fan_out'
  is normal with variance 2 / fan_out, the stack drawn as one kernel."""
  p = _init(NATSSpace(conv_init=conv_init))['block0']
  short = np.asarray(p['res0']['shortcut']['kernel'])  # [1, 1, 64, 64]
  e12 = np.asarray(p['cell0']['e12']['conv']['kernel'])  # [3, 3, 64, 64]
  adapter = np.asarray(p['adapter0_kernel'])  # [8, 64, 64]
  if conv_init == 'torch':
    assert short.std() == pytest.approx(np.sqrt(1 / (3 * 64)), rel=0.03)
    assert short.std() == pytest.approx(0.072, abs=0.002)
    assert np.abs(short).max() <= 1 / np.sqrt(64)
    assert e12.std() == pytest.approx(np.sqrt(1 / (3 * 9 * 64)), rel=0.02)
    for r, w in enumerate(WIDTHS):
      assert np.abs(adapter[r]).max() <= 1 / np.sqrt(w)
      assert adapter[r].std() == pytest.approx(np.sqrt(1 / (3 * w)),
                                               rel=0.03)
  else:
    assert short.std() == pytest.approx(np.sqrt(2 / 64), rel=0.03)
    assert e12.std() == pytest.approx(np.sqrt(2 / (9 * 64)), rel=0.02)
    # one kernel of receptive field 8: fan_out 8 * 64, every row alike
    assert adapter.std() == pytest.approx(np.sqrt(2 / (8 * 64)), rel=0.03)
  with pytest.raises(ValueError, match='conv_init'):
    NATSSpace(conv_init='xavier')


def _lars(per_row, params):
  spec = OptimizerSpec(peak_lr=0.5, warmup_steps=0, total_steps=10,
                       weight_decay=1e-4, lars_per_row=True)
  owned = jax.tree.map(lambda _: True, params)
  return spec.make(owned, per_row)


def test_trust_ratio_per_row_equals_separate_tensors():
  rows = jax.random.normal(jax.random.key(0), (3, 4, 5)) * jnp.array(
      [0.1, 1.0, 10.0])[:, None, None]
  grads = jax.random.normal(jax.random.key(1), (3, 4, 5))
  # a bias: outside LARS (optax.masked hands the per-row rule MaskedNodes)
  conv = {'kernel': rows[0] + 1, 'bias': rows[1, 0]}
  g_conv = {'kernel': grads[0], 'bias': grads[1, 0]}
  stacked = {'adapter0_kernel': rows, 'conv': conv}
  separate = {**{f'k{r}': rows[r] for r in range(3)}, 'conv': conv}
  g_st = {'adapter0_kernel': grads, 'conv': g_conv}
  g_sep = {**{f'k{r}': grads[r] for r in range(3)}, 'conv': g_conv}
  per_row = {'adapter0_kernel': True,
             'conv': {'kernel': False, 'bias': False}}
  tx = _lars(per_row, stacked)
  state = tx.init(stacked)
  tx2 = _lars(None, separate)
  state2 = tx2.init(separate)
  for _ in range(3):  # momentum carries over steps
    u, state = tx.update(g_st, state, stacked)
    u2, state2 = tx2.update(g_sep, state2, separate)
    for r in range(3):
      np.testing.assert_allclose(u['adapter0_kernel'][r], u2[f'k{r}'],
                                 rtol=1e-6, atol=1e-9)
    jax.tree.map(np.testing.assert_allclose, u['conv'], u2['conv'])
  # without per-row ratios the stack shares one ratio: narrow rows move
  # relatively more than under separate tensors
  shared, _ = _lars(None, stacked).update(
      g_st, _lars(None, stacked).init(stacked), stacked)
  assert not np.allclose(shared['adapter0_kernel'], u['adapter0_kernel'])
  # the per-row transform alone, against optax's on each row
  one = optax.scale_by_trust_ratio(trust_coefficient=0.001)
  got, _ = trust_ratio_per_row({'a': True}, 0.001).update(
      {'a': grads}, optax.EmptyState(), {'a': rows})
  for r in range(3):
    want, _ = one.update(grads[r], one.init(rows[r]), rows[r])
    np.testing.assert_allclose(got['a'][r], want, rtol=1e-6)


def test_nats_marks_only_the_width_adapters_per_row():
  params = _init(NATSSpace(embed_dim=16), embed=16)
  marks = jax.tree_util.tree_flatten_with_path(
      NATSSpace().per_choice_mask(params))[0]
  marked = {jax.tree_util.keystr(p, simple=True, separator='/')
            for p, m in marks if m}
  assert marked == {f'block{b}/adapter{b}_kernel' for b in range(3)}


def _tcfg(**kw):
  t = defaults.search_config().train
  t.update(kw)
  return t


def test_learning_rate_budget_and_scaling_rules():
  # linear (default): 0.48 x 256 / 4096
  assert peak_lr(_tcfg(), 256, 38, 950) == pytest.approx(0.03)
  assert peak_lr(_tcfg(lr_scaling='sqrt'), 1024, 0, 10) == pytest.approx(
      0.48 * 0.5)
  assert peak_lr(_tcfg(lr_scaling='none'), 256, 0, 10) == 0.48
  # the sum of a block's learning rates, whatever the batch
  t = _tcfg(batch_size=256, accum_steps=1, epochs_per_block=50,
            warmup_epochs=2.0, lr_sum=144.0)
  spec = OptimizerSpec.from_config(t, steps_per_epoch=19)
  assert spec.total_steps == 950 and spec.warmup_steps == 38
  assert spec.lr_sum() == pytest.approx(144.0, rel=1e-5)
  # the default schedule of that subset: about a tenth of it
  t.lr_sum = 0.0
  assert OptimizerSpec.from_config(t, 19).lr_sum() == pytest.approx(
      14.25, rel=1e-3)
  # the official schedule: 600 steps at batch 4096 from peak 0.48
  assert defaults.official_lr_sum() == pytest.approx(0.48 * 600 / 2,
                                                     rel=1e-3)
  c = defaults.search_config()
  defaults.NATS_PRESETS['real_budget'](c)
  assert c.train.lr_sum == pytest.approx(144.0)
  with pytest.raises(ValueError, match='lr_scaling'):
    peak_lr(_tcfg(lr_scaling='cubic'), 256, 0, 10)
  with pytest.raises(ValueError, match='lr_sum'):
    peak_lr(_tcfg(lr_sum=-1.0), 256, 0, 10)


def test_predictor_bn_reset_touches_only_the_predictor():
  bn = lambda v: {'bn': {'mean': jnp.full((2, 1, 3), v),
                         'var': jnp.full((2, 1, 3), v + 1),
                         'hits': jnp.ones((2, 1))}}
  stats = {'backbone': {'block1': {'cell1': bn(5.0)}},
           'heads': {'block1': {'projector1': bn(2.0),
                                'predictor1': bn(3.0)}}}
  same = EnsembleBootstrap().score_stats(stats)
  assert same is stats
  reset = EnsembleBootstrap(predictor_bn='reset').score_stats(stats)
  pred = reset['heads']['block1']['predictor1']['bn']
  assert float(jnp.abs(pred['mean']).max()) == 0.0
  assert float(jnp.abs(pred['var'] - 1).max()) == 0.0
  np.testing.assert_array_equal(pred['hits'], 1.0)
  for path in (('backbone', 'block1', 'cell1'),
               ('heads', 'block1', 'projector1')):
    a, b = stats, reset
    for k in path:
      a, b = a[k], b[k]
    jax.tree.map(np.testing.assert_array_equal, a, b)
  with pytest.raises(ValueError, match='predictor_bn'):
    EnsembleBootstrap(predictor_bn='freeze')


def test_projection_skip_relu_switch():
  """With skip_relu the cells' projection skip sees ReLU(x) (the official
  supernet); paths whose skips are all identities are unchanged."""
  x = jax.random.normal(jax.random.key(3), (2, 16, 16, 3))
  plain, relu = NATSSpace(embed_dim=8), NATSSpace(embed_dim=8, skip_relu=True)
  assert plain != relu
  arch0 = jnp.asarray(plain.flatten(plain.default_arch()))
  v = grouping.init(plain.supernet(8), jax.random.key(0), x, arch0)
  # the same variables serve both: the switch adds no weights
  assert jax.tree.structure(v) == jax.tree.structure(jax.eval_shape(
      lambda: grouping.init(relu.supernet(8), jax.random.key(0), x, arch0)))

  def out(space, text):
    arch = jnp.asarray(space.flatten(space.from_string(text)))
    return space.supernet(8).apply(v, x, arch, block=2, mode='eval',
                                   output='features')
  same = '16:24:24:40:40'  # c1 = c2 and c3 = c4: identity skips
  np.testing.assert_array_equal(out(plain, same), out(relu, same))
  differ = '16:24:32:40:40'  # cell 1 projects 24 -> 32
  assert float(jnp.abs(out(plain, differ) - out(relu, differ)).max()) > 1e-4


def test_defaults_are_the_official_choices():
  c = defaults.search_config()
  assert c.space.conv_init == 'torch' and c.train.lars_per_row
  assert NATSSpace().conv_init == 'torch'
  assert OptimizerSpec().lars_per_row
  # NATS-Bench's networks (the ground truth) have no ReLU on that skip
  assert c.space.skip_relu is False and c.search.predictor_bn == 'recalibrate'
