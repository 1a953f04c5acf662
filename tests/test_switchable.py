"""The fused batch norm against the textbook formula under autodiff."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bossnax.nn.switchable import SwitchableBatchNorm, batch_norm


def textbook(x, scale, bias, epsilon=1e-5):
  mean = x.mean((0, 1, 2))
  var = jnp.square(x - mean).mean((0, 1, 2))
  return (x - mean) * jax.lax.rsqrt(var + epsilon) * scale + bias, mean, var


@pytest.mark.parametrize('offset,shift', [(0.0, 0.0), (2.0, 1.5),
                                          (300.0, 299.0)])
def test_batch_norm_values_and_gradients_equal_textbook(offset, shift):
  k = jax.random.split(jax.random.key(0), 4)
  x = jax.random.normal(k[0], (4, 5, 5, 6)) * 3 + offset
  scale = jax.random.normal(k[1], (6,))
  bias = jax.random.normal(k[2], (6,))
  w = jax.random.normal(k[3], x.shape)  # a loss that weighs every output
  shift = jnp.full((6,), shift)
  fused = lambda x, s, b: batch_norm(x, s, b, shift, 1e-5)
  for got, want in zip(fused(x, scale, bias), textbook(x, scale, bias)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  loss = lambda f: lambda *a: (f(*a)[0] * w).sum()
  got = jax.grad(loss(fused), argnums=(0, 1, 2))(x, scale, bias)
  want = jax.grad(loss(textbook), argnums=(0, 1, 2))(x, scale, bias)
  for g, r in zip(got, want):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)


def test_batch_norm_bfloat16_input():
  """bfloat16 activations: float32 output, a bfloat16 input gradient, both
  as the textbook formula gives them on the same (upcast) values."""
  k = jax.random.split(jax.random.key(3), 2)
  x = (jax.random.normal(k[0], (8, 4, 4, 5)) + 0.5).astype(jnp.bfloat16)
  w = jax.random.normal(k[1], x.shape)
  one, zero = jnp.ones((5,)), jnp.zeros((5,))
  fused = lambda x: batch_norm(x, one, zero, zero, 1e-5)[0]
  y = fused(x)
  assert y.dtype == jnp.float32
  np.testing.assert_allclose(y, textbook(x.astype(jnp.float32), one, zero)[0],
                             atol=1e-4)
  g = jax.grad(lambda x: (fused(x) * w).sum())(x)
  assert g.dtype == jnp.bfloat16
  want = jax.grad(lambda x: (textbook(x, one, zero)[0] * w).sum())(
      x.astype(jnp.float32))
  np.testing.assert_allclose(g.astype(jnp.float32), want, rtol=2e-2, atol=2e-2)


def test_bfloat16_parameters_get_bfloat16_gradients_inside_a_switch():
  """bf16 scale and bias (bf16 compute casts the parameters): their
  gradients are bf16 too, so a lax.switch whose branches use the norm or
  not transposes (the HyTra switch failed to lower before)."""
  x = jax.random.normal(jax.random.key(4), (4, 3, 3, 5)).astype(jnp.bfloat16)
  scale = jnp.ones((5,), jnp.bfloat16)
  bias = jnp.zeros((5,), jnp.bfloat16)
  zero = jnp.zeros((5,))

  def f(scale, bias, i):
    return jax.lax.switch(i, [
        lambda: batch_norm(x, scale, bias, zero, 1e-5)[0].sum(),
        lambda: (x.astype(jnp.float32) * scale + bias).sum()])
  for i in (0, 1):
    g = jax.jit(jax.grad(f, argnums=(0, 1)))(scale, bias, i)
    assert [t.dtype for t in g] == [jnp.bfloat16, jnp.bfloat16]


def test_layer_gradients_and_running_stats_equal_textbook_layer():
  """The module in 'train' mode with a mask: output, gradients and running
  statistics as the textbook formula gives them, the masked channels untouched."""
  layer = SwitchableBatchNorm(num_widths=2, features=4, momentum=0.5)
  x = jax.random.normal(jax.random.key(1), (3, 2, 2, 4)) + 1.0
  mask = jnp.array([1.0, 1.0, 1.0, 0.0])
  x = x * mask
  variables = layer.init(jax.random.key(2), x, 0, 'train', mask)
  params = jax.tree.map(lambda v: v + 0.3, variables['params'])
  stats = jax.tree.map(lambda v: v + 0.2, variables['batch_stats'])

  def loss(params):
    y, new = layer.apply({'params': params, 'batch_stats': stats}, x, 1,
                         'train', mask, mutable=['batch_stats'])
    return (y * jnp.arange(y.size).reshape(y.shape)).sum() / y.size, new

  (value, new), grads = jax.value_and_grad(loss, has_aux=True)(params)

  def reference(params):
    y, mean, var = textbook(x, params['scale'][1], params['bias'][1])
    y = y * mask
    return (y * jnp.arange(y.size).reshape(y.shape)).sum() / y.size, (mean,
                                                                       var)

  (want, (mean, var)), want_grads = jax.value_and_grad(
      reference, has_aux=True)(params)
  np.testing.assert_allclose(value, want, rtol=1e-5)
  for name in ('scale', 'bias'):
    np.testing.assert_allclose(grads[name], want_grads[name], atol=1e-5)
  sel = mask[None] * jnp.array([[0.0], [1.0]])  # row 1, unmasked channels
  for name, batch in (('mean', mean), ('var', var)):
    old = stats[name]
    expected = old * (1 - sel) + sel * (0.5 * old[1] + 0.5 * batch)
    np.testing.assert_allclose(new['batch_stats'][name], expected, atol=1e-5)
