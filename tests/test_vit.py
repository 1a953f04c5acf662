"""AutoFormer's ViT space (bossnax/spaces/vit.py, bossnax/nn/vit_blocks.py)
and method: the released subnets' published sizes, weight entanglement
(a masked path equals the standalone subnet built from leading slices,
and weights outside the slice do not matter), AutoFormer's sampling,
mutation and crossover, the evolution's parameter band, the DeiT recipe's
mixing and drop path, a sharded step, and a tiny run that trains, evolves,
exports and evaluates the best subnet."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from bossnax.nn import grouping
from bossnax.spaces.vit import SUBNETS, ViTSpace, vit_cost
from conftest import DEVICES, ROOT


def tiny_space(**kw):
  """Embedding 16 / 24 in a 32-wide supernet, depth 1-3, 1-2 heads of 8,
  MLP ratio 1.5 / 2 (and 1.0 admitted, not searched), 4x4 patches of
  16x16 images: every dimension narrower than the supernet somewhere."""
  args = dict(layout='T', embed_dims=(16, 24), depths=(1, 2, 3),
              mlp_ratios=(1.5, 2.0), heads=(1, 2), extra_mlp_ratios=(1.0,),
              super_embed_dim=32, head_dim=8, image_size=16, patch_size=4,
              num_classes=10, max_rel_pos=2, drop_path=0.1)
  return ViTSpace(**{**args, **kw})


@pytest.fixture(scope='module')
def supernet():
  space = tiny_space()
  net = space.supernet()
  x = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))
  v = grouping.init(net, jax.random.key(0), x,
                    jnp.asarray(space.flatten(space.default_arch())),
                    mode='train', output='logits')
  return space, net, v, x


# -- the space -----------------------------------------------------------------


@pytest.mark.parametrize('name,published,official', [
    ('AutoFormer-T', 5.7e6, 5_867_944),
    ('AutoFormer-S', 22.9e6, 22_891_432),
    ('AutoFormer-B', 53.7e6, 53_691_688)])
def test_released_subnets_reproduce_the_published_sizes(name, published,
                                                         official):
  """Within 3% of the paper; exactly the official counter (it counts the
  relative-position tables: 4 x 30 x 64 per layer), recomputed from its
  get_sampled_params_numel; T without them is 5,768,104."""
  layout = name[-1]
  space = ViTSpace(layout=layout)
  got = space.describe_named(name)
  assert got['params'] == official
  assert abs(got['params'] / published - 1) < 0.03
  # the subnet is a path of its own layout's space, at the same cost
  arch = space.parse(name)
  assert space.flops_params(arch) == (got['flops'], got['params'])
  np.testing.assert_array_equal(
      space.flatten(space.parse(space.to_string(arch))), space.flatten(arch))
  embed, ratios, heads = SUBNETS[name]
  assert space.values(arch) == (embed, list(zip(ratios, heads)))
  if layout == 'T':
    no_rel = vit_cost(embed, ratios, heads, rel_pos=False)[1]
    assert no_rel == official - 13 * 4 * 30 * 64 == 5_768_104


def test_params_by_hand():
  """One layer of embedding 8, ratio 2, 1 head of 4, 2x2 patches of 4x4
  images, 3 classes, no relative positions, counted term by term."""
  e, hid, q = 8, 16, 4
  by_hand = (2 * 2 * 3 * e + e + e + 5 * e  # patch conv, cls, 4 + 1 pos
             + 4 * e + e * 3 * q + 3 * q + q * e + e  # norms, qkv, proj
             + e * hid + hid + hid * e + e  # MLP
             + 2 * e + e * 3 + 3)  # final norm, classifier
  madds = (4 * 2 * 2 * 3 * e + 5 * (e * 3 * q + q * e + 2 * e * hid)
           + 2 * 5 * 5 * q + e * 3)
  assert vit_cost(8, [2.0], [1], image_size=4, patch_size=2, num_classes=3,
                  head_dim=4, rel_pos=False) == (madds, by_hand)


def test_strings_values_and_bad_input():
  space = tiny_space()
  arch = space.from_string('24:1.0/2-2.0/1')
  assert space.to_string(arch) == '24:1.0/2-2.0/1'
  flat = space.flatten(arch)
  assert flat[1] == 1 and (flat[6:] == 0).all()  # skipped layers canonical
  assert space.is_valid(arch)
  bad = flat.copy()
  bad[7] = 1  # a gene of a skipped layer
  assert not space.is_valid(space.unflatten(bad))
  with pytest.raises(ValueError, match='depths 4 is not admitted'):
    space.from_string('24:1.5/1-1.5/1-1.5/1-1.5/1')
  with pytest.raises(ValueError, match="separated by '-'"):
    space.from_string('24;1.5')
  with pytest.raises(ValueError, match='use space.layout=S'):
    space.parse('AutoFormer-S')
  with pytest.raises(ValueError, match='too many to list'):
    ViTSpace().block_paths(0)


def test_sampling_draws_a_uniform_depth_and_searched_values_only():
  space = tiny_space()
  rng = np.random.default_rng(0)
  archs = [space.sample(rng) for _ in range(3000)]
  depths = np.asarray([len(space.values(a)[1]) for a in archs])
  assert np.allclose(np.bincount(depths)[1:] / 3000, 1 / 3, atol=0.03)
  ratios = {r for a in archs for r, _ in space.values(a)[1]}
  assert ratios == {1.5, 2.0}  # 1.0 is admitted, never drawn
  assert all(space.is_valid(a) for a in archs[:50])
  assert space.count() == 2 * sum(4 ** d for d in (1, 2, 3))


def test_mutation_and_crossover_as_autoformer():
  space = tiny_space()
  rng = np.random.default_rng(1)
  a = space.from_string('16:1.5/1-1.5/1')
  assert space.to_string(space.mutate(a, rng, 0.0, 0.0)) == \
      space.to_string(a)
  seen_depths, seen_embeds = set(), set()
  for _ in range(200):  # structure genes only: the layers kept stay
    m = space.mutate(a, rng, 0.0, 1.0)
    embed, layers = space.values(m)
    seen_depths.add(len(layers))
    seen_embeds.add(embed)
    assert layers[:2] == [(1.5, 1), (1.5, 1)][:len(layers)]
    assert space.is_valid(m)
  assert seen_depths == {1, 2, 3} and seen_embeds == {16, 24}
  changed = [space.values(space.mutate(a, rng, 1.0, 0.0))[1]
             for _ in range(100)]  # layer genes only
  assert all(len(l) == 2 for l in changed)
  assert any(l != [(1.5, 1), (1.5, 1)] for l in changed)
  b = space.from_string('24:2.0/2-2.0/2')
  assert not space.can_cross(a, space.from_string('24:2.0/2'))
  with pytest.raises(ValueError, match='same depth'):
    space.crossover(a, space.from_string('24:2.0/2'), rng)
  fa, fb = space.flatten(a), space.flatten(b)
  kids = [space.flatten(space.crossover(a, b, rng)) for _ in range(20)]
  for kid in kids:  # every gene from one parent or the other
    assert ((kid == fa) | (kid == fb)).all()
  assert len({k.tobytes() for k in kids}) > 2


def test_evolution_keeps_the_params_band_and_crosses_equal_depths():
  from bossnax.searchers import evolution as ev
  space = tiny_space()
  crossed = []

  class Watch(ViTSpace):
    def crossover(self, a, b, rng):
      crossed.append((len(self.values(a)[1]), len(self.values(b)[1])))
      return super().crossover(a, b, rng)
  watched = Watch(**space.space_kwargs)
  fitness = lambda texts: np.asarray(  # made-up: deeper and wider is better
      [space.flops_params(space.from_string(t))[0] for t in texts], float)
  band = ev.Budget(params=0.007, min_params=0.0045)
  ranking, used = ev.evolution(
      watched, fitness, budget=band, seed=0,
      settings=ev.EvolutionSettings(population=8, generations=3, parents=4,
                                    mutations=4, crossovers=4,
                                    mutation_prob=0.2, structure_prob=0.4))
  params = [r[3] for r in ranking.rows]
  assert used == len(ranking.rows) > 8
  assert min(params) >= 4500 and max(params) <= 7000
  assert crossed and all(da == db for da, db in crossed)


# -- weight entanglement -----------------------------------------------------------


def _paths(space):
  rng = np.random.default_rng(3)
  return [space.from_string('24:1.0/2'),  # an admitted, unsearched ratio
          space.from_string('16:2.0/2-1.5/1-1.5/1')] + [
              space.sample(rng) for _ in range(3)]


def test_a_path_equals_the_standalone_subnet_with_leading_slices(supernet):
  """Every layer type (patch embedding, class token, positions, norms,
  QKV, relative positions, projection, MLP, classifier) sliced: the
  standalone subnet on the supernet's leading slices computes the path's
  logits, its variables are as many as the counter says."""
  space, net, v, x = supernet
  for arch in _paths(space):
    flat = jnp.asarray(space.flatten(arch))
    full = net.apply(v, x, flat, mode='eval', output='logits')
    sub, sub_flat = space.standalone(arch)
    sliced = space.slice_variables(v, arch)
    got = sub.apply(sliced, x, sub_flat, mode='eval', output='logits')
    np.testing.assert_allclose(got, full, rtol=1e-5, atol=1e-6)
    assert sum(l.size for l in jax.tree.leaves(sliced)) == \
        space.flops_params(arch)[1]


def test_weights_outside_the_slice_and_skipped_layers_do_not_matter(
    supernet):
  """Noise added to every weight entry a path does not use (past its
  widths, heads, hidden units, and every layer past its depth) leaves its
  output unchanged; noise inside changes it."""
  space, net, v, x = supernet
  arch = space.from_string('16:1.5/1')
  flat = jnp.asarray(space.flatten(arch))
  sliced = space.slice_variables(v, arch)
  used = jax.tree.map(jnp.ones_like, sliced)

  def pad_to(small, big):  # 1 where the path reads the supernet's entry
    return jnp.pad(small, [(0, b - s) for s, b in zip(small.shape,
                                                       big.shape)])
  flat_v = traverse_util.flatten_dict(v)
  flat_used = traverse_util.flatten_dict(used)
  mask = {k: pad_to(flat_used[k], a) if k in flat_used else jnp.zeros_like(a)
          for k, a in flat_v.items()}
  noise = {k: jax.random.normal(jax.random.key(i), a.shape)
           for i, (k, a) in enumerate(flat_v.items())}
  outside = traverse_util.unflatten_dict(
      {k: a + (1 - mask[k]) * noise[k] for k, a in flat_v.items()})
  inside = traverse_util.unflatten_dict(
      {k: a + mask[k] * noise[k] for k, a in flat_v.items()})
  base = net.apply(v, x, flat, mode='eval', output='logits')
  np.testing.assert_allclose(
      net.apply(outside, x, flat, mode='eval', output='logits'), base,
      rtol=1e-5, atol=1e-6)
  assert np.abs(np.asarray(net.apply(inside, x, flat, mode='eval',
                                     output='logits') - base)).max() > 1e-2


def test_drop_path_only_in_training(supernet):
  space, net, v, x = supernet
  flat = jnp.asarray(space.flatten(space.largest()))
  ev = net.apply(v, x, flat, mode='eval', output='logits')
  tr = [net.apply(v, x, flat, mode='train', output='logits',
                  rngs={'dropout': jax.random.key(s)}) for s in (0, 1)]
  assert np.abs(np.asarray(tr[0] - tr[1])).max() > 1e-4
  no_drop = tiny_space(drop_path=0.0).supernet()
  np.testing.assert_allclose(
      no_drop.apply(v, x, flat, mode='train', output='logits'), ev,
      rtol=1e-5, atol=1e-6)
  with pytest.raises(Exception, match='dropout'):
    net.apply(v, x, flat, mode='train', output='logits')
  # train.remat: the same loss and gradients, drop path included
  rematted = space._network(space.max_embed, net.heads, net.hidden, True,
                            remat=True)
  grads = [jax.value_and_grad(lambda p, n=n: n.apply(
      {'params': p}, x, flat, mode='train', output='logits',
      rngs={'dropout': jax.random.key(0)}).sum())(v['params'])
           for n in (net, rematted)]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-6), *grads)


# -- the method ---------------------------------------------------------------------


def autoformer_tiny():
  from bossnax.config import load_config_file
  c = load_config_file(str(ROOT / 'configs' / 'autoformer_cifar.py') +
                       ':tiny')
  c.num_devices = DEVICES
  return c


def test_mixing_turns_labels_into_the_mixed_soft_targets():
  """The objective's mix is mix_batch of the smoothed one-hot targets on
  the training view; the loss reads soft targets as they are."""
  from bossnax.data.augment import mix_batch
  from bossnax.objectives.supervised import OneShotSupervised, cross_entropy
  obj = OneShotSupervised(num_classes=4, label_smoothing=0.1,
                          mixup_alpha=0.8, cutmix_alpha=1.0)
  x = jax.random.normal(jax.random.key(0), (6, 8, 8, 3))
  y = jnp.asarray([0, 1, 2, 3, 0, 1])
  (mixed, other), soft = obj.mix(jax.random.key(5), (x, x + 1), y)
  smooth = jax.nn.one_hot(y, 4) * 0.9 + 0.1 / 4
  want_x, want_t, lam = mix_batch(jax.random.key(5), x, smooth, 0.8, 1.0)
  np.testing.assert_allclose(mixed, want_x)
  np.testing.assert_allclose(soft, want_t, rtol=1e-6)
  np.testing.assert_allclose(other, x + 1)
  assert 0 < float(lam) < 1
  logits = jax.random.normal(jax.random.key(2), (6, 4))
  by_hand = -(soft * jax.nn.log_softmax(logits)).sum(-1)
  np.testing.assert_allclose(cross_entropy(logits, soft, 4), by_hand,
                             rtol=1e-5)
  off = OneShotSupervised(num_classes=4)
  assert off.mix(jax.random.key(5), (x,), y)[1] is y


def test_sharded_step_equals_single_device_step():
  """One AutoFormer step (mixup / cutmix, drop path, AdamW) on 2 devices
  equals the same step on 1."""
  from conftest import trainer
  c = autoformer_tiny()
  rng = np.random.default_rng(0)
  images = rng.integers(0, 255, (1, 16, 8, 8, 3), np.uint8)
  labels = rng.integers(0, 10, (1, 16)).astype(np.int32)
  from bossnax import parallel
  from bossnax.samplers import WholeSampler
  out = []
  for devices in (1, 2):
    tr = trainer(c, devices=devices, image_shape=(8, 8, 3))
    state = tr.start_block(tr.init_state(0), 0)
    archs = WholeSampler(tr.space, 1, 0).sample(0, 0)
    put = lambda a: parallel.global_batch(tr.mesh, a, batch_axis=1)
    state, m = tr.step_fn(0)(state, put(images), jax.random.key(0), archs,
                             put(labels))
    out.append(jax.device_get((state['params'], m['loss'])))
  np.testing.assert_allclose(out[0][1], out[1][1], rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                       atol=1e-6), *out)
  assert np.isfinite(out[0][1])


@pytest.mark.slow
def test_a_tiny_run_trains_evolves_exports_and_evaluates(tmp_path):
  """The whole AutoFormer pipeline through main: training, an evolution
  inside the parameter band, the best subnet exported with its inherited
  weights, whose test accuracy equals the supernet's on that path."""
  from bossnax import export
  from bossnax.main import main
  c = autoformer_tiny()
  assert main([f'--config={ROOT}/configs/autoformer_cifar.py:tiny',
               f'--workdir={tmp_path}', f'--config.num_devices={DEVICES}',
               '--config.search.min_params=0.002',
               '--config.search.params_budget=0.005']) == 0
  ranking = json.loads((tmp_path / 'ranking.json').read_text())
  rows = (tmp_path / 'scores.csv').read_text().splitlines()[1:]
  params = [int(r.split(',')[3]) for r in rows]
  assert len(rows) > 6 and min(params) >= 2000 and max(params) <= 5000
  result = json.loads((tmp_path / 'best' / 'eval.json').read_text())
  assert result['arch'] == ranking['best'] and result['images'] == 500
  # the supernet on that path, on the same test images
  space, arch, _ = export.load_spec(str(tmp_path / 'best' / 'spec.json'))
  from bossnax.checkpoint import Checkpointer
  from bossnax.data import augment
  from bossnax.data.sources import make_source
  from conftest import trainer
  tr = trainer(c, image_shape=(8, 8, 3))
  ckpt = Checkpointer(str(tmp_path / 'checkpoints'), format='bossnax.run/3')
  _, state, _ = ckpt.restore_latest(tr.state_shapes())
  ckpt.close()
  x, y = make_source(c.data, seed=c.seed).get('test', np.arange(500))
  net = space.supernet()
  logits = net.apply({'params': jax.device_get(state['params'])['backbone']},
                     augment.eval_view(x, c.augment.mean, c.augment.std),
                     jnp.asarray(space.flatten(arch)), mode='eval',
                     output='logits')
  top1 = float((np.argmax(logits, -1) == np.asarray(y)).mean())
  assert result['top1'] == pytest.approx(top1, abs=1e-6)
  # bossnax.retrain starts from the exported weights (fine-tuning): before
  # its first step it scores what eval.json says
  from bossnax.config import load_config_file
  from bossnax.retrain import Retrain
  rc = load_config_file(f'{ROOT}/configs/retrain_hytra.py:tiny')
  rc.spec = str(tmp_path / 'best' / 'spec.json')
  rc.init_weights = str(tmp_path / 'best' / 'weights')
  rc.num_devices, rc.data.image_size, rc.eval.num_images = DEVICES, 8, 0
  rc.eval.batch_size = 100
  rt = Retrain(rc)
  start = rt.init_state(0)
  assert rt.evaluate(start)['top1'] == pytest.approx(result['top1'],
                                                     abs=1e-6)
  exported = export.load_weights(rc.init_weights, rt.net, rt.arch_vec, 8)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(start['params']),
               exported['params'])


def test_random_erasing_fills_one_box_with_noise():
  """augment op 'erase' (the DeiT recipe's, on the normalised image):
  probability 1 replaces one box of 2%-33% of the image by noise, 0 none."""
  import ml_collections
  from bossnax.data import augment
  cfg = lambda p: ml_collections.ConfigDict(dict(
      ops='flip,erase', mean=(0.5,) * 3, std=(0.25,) * 3, erase_prob=p))
  images = np.full((8, 16, 16, 3), 128, np.uint8)
  clean = augment.make_single_view_fn(cfg(0.0))(jax.random.key(0), images)
  erased = augment.make_single_view_fn(cfg(1.0))(jax.random.key(0), images)
  np.testing.assert_allclose(clean, (128 / 255 - 0.5) / 0.25, atol=1e-6)
  changed = np.asarray(erased != clean).any(-1)  # [8, 16, 16]
  for box in changed:
    rows, cols = np.nonzero(box.any(1))[0], np.nonzero(box.any(0))[0]
    assert box[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
    assert 0.02 * 256 * 0.5 <= box.sum() <= 256 / 3 + 16
  with pytest.raises(ValueError, match='put it last'):
    augment.make_single_view_fn(ml_collections.ConfigDict(dict(
        ops='erase,flip', mean=(0.5,) * 3, std=(0.25,) * 3)))
