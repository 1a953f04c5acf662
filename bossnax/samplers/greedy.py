"""GreedyNAS's host-side pieces (You et al., CVPR 2020): the candidate pool,
the epsilon schedule of sampling from it, multi-path sampling with
rejection, and the early-stopping rule on the pool's change.

Each round draws m whole paths (from the pool with probability epsilon,
else uniformly), the engine scores them by their loss on a fixed
validation subset with the current weights, `reject` keeps the k lowest,
those k train one step each and enter the pool. Supernet training stops
early when the fraction of the pool replaced between two checks falls
below alpha. Everything here is a pure function of (seed, step) and the
pool, and the pool is JSON (the checkpoint's meta), so a resumed run draws
exactly what an uninterrupted one draws.

Not wired into the run loop yet (issue 18): the round needs the evaluator
between two train steps.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import optax


def reject(losses, k: int) -> np.ndarray:
  """Indices of the k lowest losses, lowest first (ties: the earlier)."""
  losses = np.asarray(losses, np.float64)
  if not 0 < k <= len(losses):
    raise ValueError(f'greedynas keeps k={k} of {len(losses)} sampled '
                     'paths: set 0 < greedy.keep <= greedy.sample')
  return np.argsort(losses, kind='stable')[:k]


def epsilon_schedule(total_steps: int, final: float = 0.8,
                     kind: str = 'linear'):
  """step -> probability of drawing a path from the pool: 0 at the start,
  `final` after `total_steps` (the paper: linear to 0.8)."""
  if kind == 'linear':
    return optax.linear_schedule(0.0, final, max(total_steps, 1))
  if kind == 'cosine':
    decay = optax.cosine_decay_schedule(final, max(total_steps, 1))
    return lambda step: final - decay(step)
  raise ValueError(f"greedy.epsilon_schedule={kind!r}: use 'linear' or "
                   "'cosine'")


class CandidatePool:
  """The best paths seen so far with their latest loss, at most `size`.

  `update` gives a path its newest loss (a path trained since it entered
  may have moved) and keeps the `size` lowest; members are kept in
  insertion order for deterministic sampling.
  """

  def __init__(self, size: int = 1000):
    if size < 1:
      raise ValueError(f'greedy.pool_size={size}: give 1 or more')
    self.size = int(size)
    self.losses: dict[str, float] = {}

  def __len__(self):
    return len(self.losses)

  @property
  def full(self) -> bool:
    return len(self.losses) >= self.size

  def members(self) -> frozenset:
    return frozenset(self.losses)

  def update(self, texts, losses) -> None:
    for t, l in zip(texts, losses):
      self.losses.pop(t, None)  # re-entered: its newest loss, at the end
      self.losses[t] = float(l)
    if len(self.losses) > self.size:
      keep = sorted(self.losses, key=self.losses.get)[:self.size]
      keep = set(keep)
      self.losses = {t: l for t, l in self.losses.items() if t in keep}

  def sample(self, rng: np.random.Generator) -> str:
    texts = list(self.losses)
    return texts[rng.integers(len(texts))]

  def best(self, n: int):
    """The n lowest-loss members, lowest first: [(text, loss)]."""
    return sorted(self.losses.items(), key=lambda kv: kv[1])[:n]

  def state_dict(self):
    return {'size': self.size, 'losses': [[t, l] for t, l in
                                          self.losses.items()]}

  def load_state_dict(self, state):
    self.size = int(state['size'])
    self.losses = {t: float(l) for t, l in state['losses']}


def change_rate(before: frozenset, after: frozenset, size: int) -> float:
  """The fraction of a pool of `size` replaced between two checks."""
  return len(after - before) / max(size, 1)


@dataclasses.dataclass
class EarlyStop:
  """Stop supernet training when the pool is full and the fraction of it
  replaced since the previous check is below `alpha` (the paper: 0.08)."""
  alpha: float = 0.08
  previous: frozenset | None = None
  last_rate: float | None = None

  def check(self, pool: CandidatePool) -> bool:
    members = pool.members()
    stop = False
    if self.previous is not None and pool.full:
      self.last_rate = change_rate(self.previous, members, pool.size)
      stop = self.last_rate < self.alpha
    self.previous = members
    return stop

  def state_dict(self):
    return {'alpha': self.alpha, 'last_rate': self.last_rate,
            'previous': sorted(self.previous) if self.previous is not None
            else None}

  def load_state_dict(self, state):
    self.alpha, self.last_rate = float(state['alpha']), state['last_rate']
    prev = state['previous']
    self.previous = frozenset(prev) if prev is not None else None


class GreedySampler:
  """One round's m candidate paths: each from the pool with probability
  epsilon(step), else uniform over the space; a pure function of (seed,
  step) and the pool."""

  name = 'greedy'

  def __init__(self, space, sample: int = 10, keep: int = 5,
               pool_size: int = 1000, total_steps: int = 1,
               epsilon_final: float = 0.8, epsilon_kind: str = 'linear',
               seed: int = 0):
    if not 0 < keep <= sample:
      raise ValueError(f'greedy.keep={keep}, greedy.sample={sample}: need '
                       '0 < keep <= sample')
    self.space, self.m, self.k, self.seed = space, sample, keep, seed
    self.pool = CandidatePool(pool_size)
    self.epsilon = epsilon_schedule(total_steps, epsilon_final, epsilon_kind)

  def candidates(self, step: int) -> list[str]:
    rng = np.random.default_rng([self.seed, int(step), 0x6EED])
    eps = float(self.epsilon(step))
    out = []
    for _ in range(self.m):
      if len(self.pool) and rng.random() < eps:
        out.append(self.pool.sample(rng))
      else:
        out.append(self.space.to_string(self.space.sample(rng)))
    return out

  def select(self, texts, losses) -> list[str]:
    """The k lowest-loss candidates, which train and enter the pool."""
    kept = reject(losses, self.k)
    chosen = [texts[i] for i in kept]
    self.pool.update(chosen, [losses[i] for i in kept])
    return chosen

  def state_dict(self):
    return {'name': self.name, 'pool': self.pool.state_dict()}

  def load_state_dict(self, state):
    if state and state.get('name') != self.name:
      raise ValueError(f'the checkpoint was trained with the '
                       f'{state.get("name")} sampler, not {self.name}')
    if state:
      self.pool.load_state_dict(state['pool'])
