"""NATS size space: structure, NATS-Bench costs, and weight sharing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bossnax.spaces.nats import NATSSpace


@pytest.fixture(scope='module')
def space():
  return NATSSpace(embed_dim=8)


@pytest.fixture(scope='module')
def variables(space):
  x = jnp.zeros((2, 32, 32, 3))
  arch = jnp.asarray(space.flatten(space.default_arch()))
  return jax.jit(lambda k: space.supernet(8).init(k, x, arch))(
      jax.random.key(0))


@pytest.mark.parametrize('arch,mflops,mparams', [
    ('8:8:8:8:8', 4.48, 0.0117),
    ('8:8:8:16:32', 6.84, 0.049),
    ('8:8:40:32:40', 21.83, 0.145),
])
def test_costs_match_nats_bench(space, arch, mflops, mparams):
  flops, params = space.flops_params(space.from_string(arch))
  assert flops / 1e6 == pytest.approx(mflops, rel=0.01)
  assert params / 1e6 == pytest.approx(mparams, rel=0.01)


def test_per_layer_costs_add_up_to_the_network():
  """The per-layer split the GPU benchmarks' model FLOPs use: its sums
  are the network's count, and a layer's share moves only with its own
  and the previous layer's widths."""
  from bossnax.spaces.nats import nats_flops_params, nats_layer_costs
  rng = np.random.default_rng(0)
  for _ in range(20):
    chans = tuple(int(c) for c in rng.choice([8, 16, 24, 64], 5))
    madds, params = nats_layer_costs(chans)
    assert (sum(madds), sum(params)) == nats_flops_params(chans)
  a, _ = nats_layer_costs((8, 8, 40, 32, 40))
  b, _ = nats_layer_costs((8, 8, 40, 32, 64))  # only the last layer moves
  assert a[:4] == b[:4] and a[4] < b[4]


def test_structure_and_strings(space):
  assert space.count() == 32768
  assert [b.num_layers for b in space.blocks] == [2, 2, 1]
  assert NATSSpace('cifar100').block_split == ((0, 1), (2,), (3, 4))
  assert NATSSpace('0,1,2|3,4').block_split == ((0, 1, 2), (3, 4))
  with pytest.raises(ValueError, match='cover layers'):
    NATSSpace('0,1|3,4')
  arch = space.from_string('8:16:24:64:40')
  assert space.to_string(arch) == '8:16:24:64:40'
  assert space.block_paths(0).shape == (64, 2)
  assert space.block_paths(2).shape == (8, 1)
  # NATS-Bench index = position in itertools.product(widths, repeat=5)
  assert space.index(space.from_string('8:8:8:8:16')) == 1
  assert space.index(space.from_string('16:8:8:8:8')) == 8 ** 4
  with pytest.raises(ValueError, match='c0:c1:c2:c3:c4'):
    space.from_string('8:8:8')


@pytest.mark.parametrize('output,block', [
    ('features', 0), ('features', 1), ('features', 2), ('embed', 1),
    ('logits', None)])
@pytest.mark.parametrize('mode', ['eval', 'train'])
def test_narrow_path_equals_standalone_network(space, variables, output,
                                               block, mode):
  """Masked supernet path == a standalone narrow net with sliced weights."""
  x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
  # Non-trivial running statistics, so 'eval' mode tests the row selection.
  variables = jax.tree.map(lambda v: v, variables)
  variables['batch_stats'] = jax.tree.map(
      lambda s: s + 0.1 * jax.random.uniform(jax.random.key(2), s.shape),
      variables['batch_stats'])
  for text in ('16:8:40:32:24', '64:24:24:8:56'):
    arch = space.from_string(text)
    net = space.supernet(8)
    y = net.apply(variables, x, jnp.asarray(space.flatten(arch)), block=block,
                  mode=mode, output=output, mutable=['batch_stats'])[0]
    small, small_arch = space.standalone(arch)
    sliced = space.slice_variables(variables, arch)
    y2 = small.apply(sliced, x, jnp.asarray(small_arch), block=block,
                     mode=mode, output=output, mutable=['batch_stats'])[0]
    c = y2.shape[-1]
    np.testing.assert_allclose(y[..., :c], y2, atol=2e-5)
    if y.shape[-1] > c:  # inactive channels are exactly zero
      assert float(jnp.abs(y[..., c:]).max()) == 0.0
    # The standalone network has exactly the NATS-Bench parameter count
    # (adapters and per-width statistics aside).
    n = sum(v.size for group in sliced['params'].values()
            for k, v in group.items() if not k.startswith('adapter')
            for v in jax.tree.leaves(v))
    assert n == space.flops_params(arch)[1]


def test_one_compilation_serves_every_path(space, variables):
  net = space.supernet(8)
  traces = []

  @jax.jit
  def f(arch):
    traces.append(1)
    return net.apply(variables, jnp.ones((2, 32, 32, 3)), arch, block=1,
                     mode='eval', output='embed')
  for text in ('8:8:8:8:8', '64:64:64:64:64', '16:32:48:8:8'):
    f(jnp.asarray(space.flatten(space.from_string(text))))
  assert len(traces) == 1


def test_host_side_architecture_operators(space):
  """sample / mutate / crossover / largest / smallest (what evolution and
  the budgeted searches use): valid architectures, mutation changes about
  `prob` of the layers, crossover takes every layer from a parent."""
  rng = np.random.default_rng(0)
  assert space.to_string(space.largest()) == '64:64:64:64:64'
  assert space.to_string(space.smallest()) == '8:8:8:8:8'
  archs = [space.sample(rng) for _ in range(200)]
  assert all(space.is_valid(a) for a in archs)
  assert len({space.to_string(a) for a in archs}) > 190  # 32,768 to draw from
  flat = np.stack([space.flatten(a) for a in archs])
  assert set(flat.ravel().tolist()) == set(range(8))
  changed = [np.mean(space.flatten(space.mutate(a, rng, 0.4)) !=
                     space.flatten(a)) for a in archs]
  # a redrawn layer keeps its choice 1 time in 8: 0.4 * 7/8 = 0.35
  assert 0.3 < np.mean(changed) < 0.4
  for a, b in zip(archs[::2], archs[1::2]):
    child = space.flatten(space.crossover(a, b, rng))
    fa, fb = space.flatten(a), space.flatten(b)
    assert ((child == fa) | (child == fb)).all()


def test_constrained_space_operators_stay_valid():
  from bossnax.spaces.hytra import HyTraSpace
  hytra = HyTraSpace(depth=1)
  rng = np.random.default_rng(1)
  archs = [hytra.sample(rng) for _ in range(50)]
  for a, b in zip(archs, archs[1:]):
    assert hytra.is_valid(hytra.mutate(a, rng, 0.5))
    assert hytra.is_valid(hytra.crossover(a, b, rng))
  assert hytra.is_valid(hytra.smallest()) and hytra.is_valid(hytra.largest())
