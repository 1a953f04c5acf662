"""GreedyNAS's host-side pieces (bossnax/samplers/greedy.py): rejection
keeps exactly the k lowest losses, the pool's update and bound, the
epsilon schedule, the early-stop rule on a scripted sequence, and a
sampler restored from its state draws what the uninterrupted one draws."""

import json

import numpy as np
import pytest

from bossnax import defaults
from bossnax.samplers import greedy
from bossnax.spaces import make_space


def test_rejection_keeps_exactly_the_k_lowest():
  losses = [0.5, 0.1, 0.9, 0.1, 0.3, 0.7]
  assert greedy.reject(losses, 3).tolist() == [1, 3, 4]  # tie: earlier first
  assert greedy.reject(losses, 6).tolist() == [1, 3, 4, 0, 5, 2]
  with pytest.raises(ValueError, match='0 < greedy.keep'):
    greedy.reject(losses, 7)


def test_pool_keeps_the_best_with_their_newest_loss():
  pool = greedy.CandidatePool(size=3)
  pool.update(['a', 'b', 'c'], [0.3, 0.2, 0.5])
  assert pool.full and pool.best(3) == [('b', 0.2), ('a', 0.3), ('c', 0.5)]
  pool.update(['d', 'c'], [0.1, 0.05])  # c moved: its newest loss counts
  assert len(pool) == 3
  assert pool.best(3) == [('c', 0.05), ('d', 0.1), ('b', 0.2)]
  again = greedy.CandidatePool(1)
  again.load_state_dict(json.loads(json.dumps(pool.state_dict())))
  assert again.losses == pool.losses and again.size == 3


@pytest.mark.parametrize('kind', ['linear', 'cosine'])
def test_epsilon_rises_from_zero_to_its_final_value(kind):
  eps = greedy.epsilon_schedule(100, 0.8, kind)
  assert float(eps(0)) == 0.0
  assert float(eps(100)) == pytest.approx(0.8)
  assert float(eps(500)) == pytest.approx(0.8)  # held after the end
  assert float(eps(50)) == pytest.approx(0.4, abs=1e-6)
  quarter = float(eps(25))
  assert quarter == pytest.approx(0.2 if kind == 'linear' else
                                  0.4 * (1 - np.cos(np.pi / 4)), abs=1e-6)
  with pytest.raises(ValueError, match="'linear' or 'cosine'"):
    greedy.epsilon_schedule(100, 0.8, 'step')


def test_early_stop_on_a_scripted_pool():
  """A pool of 10: no stop while it fills; 3 of 10 replaced (0.3) goes
  on; 0 replaced stops at alpha 0.08; so does 0 of 10 after 1 of 10."""
  pool, stop = greedy.CandidatePool(10), greedy.EarlyStop(alpha=0.08)
  pool.update([f'a{i}' for i in range(6)], np.arange(6) * 0.1)
  assert not stop.check(pool)  # not full
  pool.update([f'a{i}' for i in range(6, 10)], np.arange(6, 10) * 0.1)
  assert not stop.check(pool) and stop.last_rate is not None
  pool.update(['b0', 'b1', 'b2'], [0.0, 0.01, 0.02])  # 3 new ones in
  assert not stop.check(pool) and stop.last_rate == pytest.approx(0.3)
  pool.update(['b0'], [0.001])  # only a loss moves
  assert stop.check(pool) and stop.last_rate == 0.0
  restored = greedy.EarlyStop()
  restored.load_state_dict(json.loads(json.dumps(stop.state_dict())))
  assert restored.previous == stop.previous and restored.alpha == 0.08


def test_a_restored_sampler_draws_what_the_uninterrupted_one_draws():
  space = make_space(defaults.search_config().space)
  make = lambda: greedy.GreedySampler(space, sample=10, keep=5,
                                      pool_size=8, total_steps=6, seed=3)
  loss = lambda t: float(sum(int(c) for c in t.split(':')))  # made up

  def rounds(sampler, steps):
    seen = []
    for s in steps:
      texts = sampler.candidates(s)
      seen.append(sampler.select(texts, [loss(t) for t in texts]))
    return seen

  whole = make()
  all_rounds = rounds(whole, range(8))
  for kept in all_rounds:
    assert len(kept) == 5
  first = make()
  head = rounds(first, range(4))
  resumed = make()
  resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
  assert head + rounds(resumed, range(4, 8)) == all_rounds
  assert resumed.pool.losses == whole.pool.losses and len(whole.pool) == 8
  # later rounds draw from the pool (epsilon 0.8): some candidates repeat
  late = whole.candidates(7)
  assert any(t in whole.pool.losses for t in late)
  with pytest.raises(ValueError, match='0 < keep <= sample'):
    greedy.GreedySampler(space, sample=4, keep=5)


def test_rounds_score_once_and_train_the_kept_paths_in_order():
  """keep 4 at 2 paths per step: a round is 2 steps, scored once at its
  first step; its steps train the 4 lowest-loss candidates, 2 by 2; a
  sampler restored mid-round trains the rest of that round unscored."""
  space = make_space(defaults.search_config().space)
  make = lambda: greedy.GreedySampler(space, sample=8, keep=4, pool_size=6,
                                      total_steps=10, seed=1,
                                      paths_per_step=2)
  calls = []

  def score(flat):  # made-up losses: the sum of the channels
    calls.append(len(flat))
    return flat.sum(1).astype(np.float64)

  s = make()
  first = s.paths(0, score)
  texts = s.candidates(0)
  flat = np.stack([space.flatten(space.from_string(t)) for t in texts])
  kept = flat[np.argsort(flat.sum(1), kind='stable')[:4]]
  np.testing.assert_array_equal(first, kept[:2])
  mid = json.loads(json.dumps(s.state_dict()))
  np.testing.assert_array_equal(s.paths(1, score), kept[2:])
  assert calls == [8]  # one scoring per round
  resumed = make()
  resumed.load_state_dict(mid)
  np.testing.assert_array_equal(resumed.paths(1, score), kept[2:])
  assert calls == [8]
  s.paths(2, score)
  assert calls == [8, 8] and s.round['start'] == 2
  assert set(s.metrics(2)) >= {'epsilon', 'pool_size', 'kept_loss'}


def test_max_flops_filters_fresh_candidates_and_early_stop_records_why():
  space = make_space(defaults.search_config().space)
  limit = 40.0  # MAdds (M): about the cheapest tenth of NATS networks
  s = greedy.GreedySampler(space, sample=6, keep=2, pool_size=2, seed=0,
                           max_flops=limit, alpha=0.5, check_every=2)
  flat = np.stack([space.flatten(space.from_string(t))
                   for t in s.candidates(0)])
  assert (space.costs(flat)[:, 0] <= limit * 1e6).all()
  score = lambda f: np.zeros(len(f))
  s.paths(0, score)  # the pool fills with 2
  assert not s.after_step(1)  # not a check step
  assert not s.after_step(2)  # the first check: nothing to compare with
  s.pool.update(list(s.pool.losses), [0.0, 0.0])  # unchanged members
  assert s.after_step(4) and s.stopped == {'step': 4, 'change_rate': 0.0,
                                           'alpha': 0.5}
  with pytest.raises(ValueError, match='no path of 1,000'):
    greedy.GreedySampler(space, sample=2, keep=1, max_flops=1e-6).candidates(0)


def test_supernet_fitness_pads_to_few_batch_sizes():
  from bossnax.searchers.whole import padded_size
  assert [padded_size(n, 1) for n in (1, 2, 3, 5, 8, 9, 20, 50)] == [
      1, 2, 4, 8, 8, 16, 24, 56]
  assert [padded_size(n, 16) for n in (1, 16, 17)] == [16, 16, 32]
