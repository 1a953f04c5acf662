"""GreedyNAS on the engine (bossnax/methods/greedynas.py): the SPOS space's
identity really removes its layer; a tiny greedy run keeps its pool, its
early stop and an evolution seeded from the pool; a run killed mid-round
and resumed ends where the uninterrupted one ends."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from bossnax.nn import grouping
from bossnax.spaces.base import take_like
from bossnax.spaces.mbconv import MBConvSpace
from conftest import ROOT


def _rename_layers(tree, shift_from):
  """The variables with layer{i} renamed layer{i-1} for i > shift_from
  (layer `shift_from` itself dropped)."""
  out = {}
  for path, v in traverse_util.flatten_dict(tree).items():
    path = list(path)
    for j, name in enumerate(path):
      if name.startswith('layer') and name[5:].isdigit():
        i = int(name[5:])
        if i == shift_from:
          path = None
          break
        if i > shift_from:
          path[j] = f'layer{i - 1}'
    if path is not None:
      out[tuple(path)] = v
  return traverse_util.unflatten_dict(out)


def test_the_identity_choice_removes_its_layer():
  """The supernet with layer 1 = identity computes the network that has no
  layer 1 (the next layers renumbered, the same weights), and the identity
  is offered only where the layer keeps its shape."""
  widths = (8,) * 6
  space = MBConvSpace('spos', 10, True, (2, 1, 1, 1, 1, 1), widths)
  shorter = MBConvSpace('spos', 10, True, (1, 1, 1, 1, 1, 1), widths)
  ident = space.layers[1].choices.index('identity')
  assert 'identity' not in space.layers[0].choices  # 16 -> 8 wide
  assert 'identity' not in space.layers[2].choices  # stride 2
  x = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))
  net = space.supernet()
  flat = np.asarray([2, ident, 3, 0, 5, 1, 4], np.int32)
  v = grouping.init(net, jax.random.key(0), x, jnp.asarray(flat), mode='train',
                    output='logits')
  # give the running statistics values, so 'eval' reads them
  v = {'params': v['params'], 'batch_stats': jax.tree.map(
      lambda s: s + 0.1 * jax.random.uniform(jax.random.key(2), s.shape),
      v['batch_stats'])}
  full = net.apply(v, x, jnp.asarray(flat), mode='eval', output='logits')
  small, small_flat = shorter.standalone(shorter.unflatten(
      np.delete(flat, 1)))
  shapes = jax.eval_shape(lambda: small.init(jax.random.key(0), x,
                                             small_flat))
  renamed = {k: _rename_layers(t, 1) for k, t in v.items()}
  got = small.apply(take_like(renamed, shapes), x, small_flat, mode='eval',
                    output='logits')
  np.testing.assert_allclose(got, full, rtol=1e-5, atol=1e-6)
  # and another choice at layer 1 does change the output
  other = net.apply(v, x, jnp.asarray(np.where(np.arange(7) == 1, 0, flat)),
                    mode='eval', output='logits')
  assert np.abs(np.asarray(other) - np.asarray(full)).max() > 1e-4


# GreedyNAS on the tiny NATS space (a few seconds to compile, where the
# SPOS layout of configs/greedynas_cifar.py:tiny takes a minute; the identity
# test above covers that layout): one path per step, rounds of 2 steps, 48
# images at batch 16 for 5 epochs (15 steps), 4 candidates, a pool of 4
# checked every 2 steps, an evolution of 12 evaluations.
GREEDY_ARGS = [
    '--config.method=greedynas', '--config.train.paths_per_step=1',
    '--config.train.epochs_per_block=5',
    '--config.train.checkpoint_every_steps=3',  # some checkpoints mid-round
    '--config.train.label_smoothing=0.1', '--config.greedy.sample=4',
    '--config.greedy.keep=2', '--config.greedy.pool_size=4',
    '--config.greedy.val_images=16', '--config.greedy.check_every_steps=2',
    '--config.search.num_images=16', '--config.search.strategy=evolution',
    '--config.search.evaluations=12',
    '--config.search.evolution.population=4',  # batches of 4, as the rejection's
    '--config.search.evolution.generations=1',
    '--config.search.evolution.parents=4',
    '--config.search.evolution.mutations=4',
    '--config.search.evolution.crossovers=4',
    '--config.search.evolution.mutation_prob=0.5']  # 32 archs: new children


def greedy_argv():
  from conftest import DEVICES
  return [f'--config={ROOT / "configs" / "nats_cifar10.py"}:tiny',
          f'--config.num_devices={DEVICES}', *GREEDY_ARGS]


def greedy_config():
  from bossnax.config import parse_args
  return parse_args(greedy_argv(), {})[0]


@pytest.fixture(scope='module')
def greedy_run(tmp_path_factory):
  """A tiny greedy NATS run end to end through main: (config, workdir,
  final state, meta)."""
  from bossnax import main
  from bossnax.run import Run
  c = greedy_config()
  workdir = tmp_path_factory.mktemp('greedy') / 'run'
  assert main.main(greedy_argv() + [f'--workdir={workdir}']) == 0
  run = Run(c, str(workdir), write_metrics=False)
  _, state, meta = run.restore()
  run.close()
  return c, workdir, jax.device_get(state), meta


@pytest.mark.xdist_group('greedy_run')
def test_a_greedy_run_keeps_its_pool_stops_early_and_searches_from_it(
    greedy_run):
  c, workdir, _, meta = greedy_run
  ranking = json.loads((workdir / 'ranking.json').read_text())
  pool = json.loads((workdir / 'pool.json').read_text())['pool']
  stop = ranking['greedy']['early_stop']
  steps = 15  # 48 images at 16, 5 epochs
  assert stop == meta['early_stop'] and stop['of_steps'] == steps
  assert stop['step'] < steps and stop['step'] % c.greedy.check_every_steps == 0
  assert stop['change_rate'] < c.greedy.early_stop_alpha
  losses = [p['loss'] for p in pool]
  assert len(pool) == c.greedy.pool_size and losses == sorted(losses)
  assert ranking['greedy']['pool_best'] == pool[:10]
  # the evolution started from the pool: every member was evaluated
  assert {p['arch'] for p in pool} <= set(meta['archs'])
  assert len(meta['archs']) == c.search.evaluations
  rows = [json.loads(l) for l in open(workdir / 'metrics.jsonl')]
  trained = [r for r in rows if 'loss' in r]
  assert [r['step'] for r in trained] == list(range(1, stop['step'] + 1))
  assert {'epsilon', 'pool_size', 'kept_loss', 'candidates_loss'} <= set(
      trained[-1])
  assert trained[0]['epsilon'] == 0.0 < trained[-1]['epsilon']
  assert trained[-1]['kept_loss'] <= trained[-1]['candidates_loss']
  assert any(r.get('early_stop_step') == stop['step'] for r in rows)
  # the round in the checkpoint: its kept paths are its k lowest losses
  rnd = meta['sampler']['round']
  assert len(rnd['kept']) == c.greedy.keep
  assert len(rnd['losses']) == c.greedy.sample


@pytest.mark.slow
@pytest.mark.xdist_group('greedy_run')
def test_killed_mid_round_and_resumed_equals_uninterrupted(
    greedy_run, tmp_path, monkeypatch):
  """Killed at step 5: the last checkpoint (step 3) is inside the round that
  began at step 2, so the resumed run must train that round's paths from
  the checkpoint, and score the next rounds with the same weights."""
  from conftest import cut_search, run_search
  c, _, ref_state, ref_meta = greedy_run
  cut = cut_search(monkeypatch, c, tmp_path / 'cut', 5)
  assert cut['block_step'] == 3 and cut['sampler']['round']['start'] == 2
  state, meta = run_search(c, tmp_path / 'cut')
  for key in ('sampler', 'early_stop', 'archs', 'losses', 'pool'):
    assert meta[key] == ref_meta[key], key
  for x, y in zip(jax.tree.leaves(state), jax.tree.leaves(ref_state),
                  strict=True):
    np.testing.assert_array_equal(x, y)


def test_top1_error_needs_a_classifier_score():
  from types import SimpleNamespace
  from bossnax.run import Run
  hits = Run._top1(SimpleNamespace(last_metrics={'correct': [0.25, 1.0]}),
                   'search.fitness=error')
  np.testing.assert_allclose(1.0 - hits, [0.75, 0.0])
  with pytest.raises(ValueError, match='search.fitness=error needs a '
                     'classification objective'):
    Run._top1(SimpleNamespace(last_metrics={}), 'search.fitness=error')
