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

The run (bossnax/run.py) calls `paths(step, score)` inside the train
step, not in the prefetched batch loader: the candidates must be scored
with the weights of the previous step.
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
  """GreedyNAS's sampler of whole paths, one round at a time.

  A round is `keep / paths_per_step` consecutive train steps. At its first
  step the run hands `paths(step, score)` a scorer with the current
  weights; the round's m candidates (each from the pool with probability
  epsilon(step), else uniform over the space, redrawn above `max_flops`)
  are scored in one call, the k lowest enter the pool and train, P of them
  per step. With `alpha` > 0, `after_step` applies the early-stop rule
  every `check_every` steps. Everything is a pure function of (seed, step)
  and the state (pool, current round, early-stop memory), which is JSON:
  a run resumed mid-round trains exactly the paths the uninterrupted one
  trains.
  """

  name = 'greedy'
  scored = True  # the run scores the candidates with the current weights

  def __init__(self, space, sample: int = 10, keep: int = 5,
               pool_size: int = 1000, total_steps: int = 1,
               epsilon_final: float = 0.8, epsilon_kind: str = 'linear',
               seed: int = 0, paths_per_step: int = 1, max_flops: float = 0.0,
               alpha: float = 0.0, check_every: int = 1):
    if not 0 < keep <= sample:
      raise ValueError(f'greedy.keep={keep}, greedy.sample={sample}: need '
                       '0 < keep <= sample')
    if paths_per_step < 1 or keep % paths_per_step:
      raise ValueError(f'greedy.keep={keep} kept paths train '
                       f'train.paths_per_step={paths_per_step} per step: set '
                       'keep to a multiple of paths_per_step')
    if not 0 <= epsilon_final <= 1:
      raise ValueError(f'greedy.epsilon_final={epsilon_final}: a '
                       'probability in [0, 1]')
    self.space, self.m, self.k, self.seed = space, sample, keep, seed
    self.per_step = paths_per_step
    self.round_steps = keep // paths_per_step
    self.max_flops = float(max_flops)
    self.pool = CandidatePool(pool_size)
    self._eps = (epsilon_final, epsilon_kind)
    self.epsilon = epsilon_schedule(total_steps, epsilon_final, epsilon_kind)
    self.early = EarlyStop(alpha) if alpha > 0 else None
    self.check_every = max(int(check_every), 1)
    self.round = None  # {'start', 'kept', 'losses' (of the m candidates)}
    self.stopped = None  # {'step', 'change_rate', 'alpha'} once stopped

  def schedule(self, total_steps: int, steps_per_epoch: int,
               check_every: int = 0):
    """Fit to the run: epsilon rises over `total_steps`; the early-stop
    check every `check_every` steps (0 = once an epoch)."""
    self.epsilon = epsilon_schedule(total_steps, *self._eps)
    self.check_every = max(int(check_every or steps_per_epoch), 1)

  def _fresh(self, rng) -> str:
    """A uniform path, redrawn while above max_flops."""
    for _ in range(1000):
      text = self.space.to_string(self.space.sample(rng))
      if not self.max_flops or self.space.costs(
          self.space.flatten(self.space.from_string(text))[None])[0, 0] <= (
              self.max_flops * 1e6):
        return text
    raise ValueError(f'greedy.max_flops={self.max_flops}: no path of 1,000 '
                     'uniform draws fits; raise it or set 0 (none)')

  def candidates(self, step: int) -> list[str]:
    rng = np.random.default_rng([self.seed, int(step), 0x6EED])
    eps = float(self.epsilon(step))
    out = []
    for _ in range(self.m):
      u = rng.random()  # drawn whether or not the pool is empty yet
      if len(self.pool) and u < eps:
        out.append(self.pool.sample(rng))
      else:
        out.append(self._fresh(rng))
    return out

  def select(self, texts, losses) -> list[str]:
    """The k lowest-loss candidates, which train and enter the pool."""
    kept = reject(losses, self.k)
    chosen = [texts[i] for i in kept]
    self.pool.update(chosen, [losses[i] for i in kept])
    return chosen

  def paths(self, step: int, score) -> np.ndarray:
    """The [P, L] paths step `step` trains; at a round's first step its
    candidates are scored by score(flat [m, L]) -> losses (lower better)."""
    start = step - step % self.round_steps
    if self.round is None or self.round['start'] != start:
      texts = self.candidates(start)
      flat = np.stack([self.space.flatten(self.space.from_string(t))
                       for t in texts]).astype(np.int32)
      losses = [float(v) for v in np.asarray(score(flat), np.float64)]
      self.round = {'start': start, 'kept': self.select(texts, losses),
                    'losses': losses}
    i = (step - start) * self.per_step
    return np.stack([self.space.flatten(self.space.from_string(t)) for t in
                     self.round['kept'][i:i + self.per_step]]).astype(
                         np.int32)

  def after_step(self, done: int) -> bool:
    """After `done` steps: True when the early-stop rule says stop."""
    if self.early is None or done % self.check_every:
      return False
    if self.early.check(self.pool):
      self.stopped = {'step': int(done), 'change_rate': self.early.last_rate,
                      'alpha': self.early.alpha}
      return True
    return False

  def metrics(self, step: int) -> dict:
    """Host-side figures logged beside the step's: epsilon, the pool's
    size, the last change rate, the round's kept and candidates' losses."""
    out = {'epsilon': float(self.epsilon(step)), 'pool_size': len(self.pool)}
    if self.early is not None and self.early.last_rate is not None:
      out['pool_change_rate'] = float(self.early.last_rate)
    if self.round is not None:
      losses = np.asarray(self.round['losses'])
      out['candidates_loss'] = float(losses.mean())
      out['kept_loss'] = float(np.sort(losses)[:self.k].mean())
    return out

  def state_dict(self):
    return {'name': self.name, 'pool': self.pool.state_dict(),
            'round': self.round, 'stopped': self.stopped,
            'early_stop': (self.early.state_dict() if self.early is not None
                           else None)}

  def load_state_dict(self, state):
    if state and state.get('name') != self.name:
      raise ValueError(f'the checkpoint was trained with the '
                       f'{state.get("name")} sampler, not {self.name}')
    if not state:
      return
    self.pool.load_state_dict(state['pool'])
    self.round, self.stopped = state.get('round'), state.get('stopped')
    if self.early is not None and state.get('early_stop'):
      alpha = self.early.alpha  # the config's alpha rules a resumed run
      self.early.load_state_dict(state['early_stop'])
      self.early.alpha = alpha
