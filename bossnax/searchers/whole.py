"""Whole-architecture scoring for one-shot supernets: every candidate
architecture is scored as a whole network (one vectorised pass over all of
them), and ranked by that loss. The candidates are those of
`search.archs_file` (a benchmark JSON, or a CSV with an `arch` column such
as the NATS-Bench sample) or, where the space is small enough, all of them;
`search.num_archs` > 0 keeps that many, evenly spaced through the list.
With search.strategy = evolution / nsga2 / random the trained supernet is
the fitness of a whole-architecture search instead (the listed
architectures its initial population), each architecture evaluated once.

The state (JSON, in the checkpoint): {'pool': [[best paths, loss]],
'archs': [strings], 'losses': [...]}.
"""

from __future__ import annotations

import csv

import numpy as np

from bossnax.searchers.ranking import Ranking
from bossnax.searchers.strategies import Memo, Plan, search_whole


def load_archs(space, path):
  """The architectures listed in `path` (JSON benchmark or CSV)."""
  if path.endswith('.json'):
    return list(space.benchmark(path)[0])
  try:
    with open(path, newline='') as f:
      rows = list(csv.DictReader(f))
  except OSError as e:
    raise ValueError(f'search.archs_file={path!r}: {e}') from None
  if not rows or 'arch' not in rows[0]:
    raise ValueError(f'search.archs_file={path!r}: expected a CSV with an '
                     "'arch' column (or a benchmark JSON)")
  return [space.parse(r['arch']) for r in rows]


def padded_size(n: int, chunk: int) -> int:
  """The batch size n paths are padded to: a multiple of `chunk`; with
  chunk 1 (paths one after another) the next power of two up to 8, then a
  multiple of 8. A few compiled programs serve every batch size, at most 7
  paths wasted."""
  if chunk > 1:
    return -(-n // chunk) * chunk
  return 1 << max(n - 1, 0).bit_length() if n <= 8 else -(-n // 8) * 8


def supernet_fitness(space, score_archs, chunk):
  """texts -> -score_archs(flat archs), higher = better, in batches padded
  to `padded_size` (copies of the first row, dropped after)."""
  chunk = max(int(chunk), 1)

  def fitness(texts):
    flat = np.stack([space.flatten(space.from_string(t))
                     for t in texts]).astype(np.int32)
    n = len(flat)
    flat = np.concatenate([flat, np.repeat(flat[:1], padded_size(n, chunk) - n,
                                           0)])
    return -np.asarray(score_archs(flat), np.float64)[:n]
  return fitness


class WholeArchs:
  """The searcher of one-shot methods."""

  def __init__(self, space, archs_file='', num_archs=0, max_archs=100_000,
               plan=None, chunk=16, fitness='loss'):
    """`num_archs` > 0: only that many candidates, evenly spaced through
    the list (a whole network costs a forward pass per validation image:
    CPU presets). `plan`: search.strategy and its settings; `chunk`: the
    searches' batches are padded to a multiple of it (search.path_chunk),
    so a few compiled programs serve every batch."""
    self.space, self.archs_file, self.max_archs = space, archs_file, max_archs
    self.num_archs = int(num_archs)
    self.plan, self.chunk = plan or Plan(), max(int(chunk), 1)
    self.fitness = fitness  # what the losses are: 'loss' | 'error' (top-1)
    if self.plan.strategy == 'blockwise_budget':
      raise ValueError('search.strategy=blockwise_budget needs block tables; '
                       'a one-shot method scores whole networks: use '
                       'evolution, nsga2 or random')

  def candidates(self):
    if self.archs_file:
      archs = load_archs(self.space, self.archs_file)
    elif self.space.count() > self.max_archs:
      raise ValueError(f'{self.space.count()} architectures are too many to '
                       'score one by one: list candidates in '
                       '--config.search.archs_file')
    else:
      archs = list(self.space.enumerate())
    if 0 < self.num_archs < len(archs):  # evenly spaced through the list
      keep = np.unique(np.linspace(0, len(archs) - 1, self.num_archs).round()
                       .astype(int))
      archs = [archs[i] for i in keep]
    return archs

  @staticmethod
  def initial_state():
    return {'pool': [[[], 0.0]], 'archs': [], 'losses': []}

  def prefixes(self, state):
    del state
    return np.zeros((1, self.space.num_layers), np.int32)

  def search_block(self, state, block, score_fn, score_archs=None):
    """Score every candidate with score_archs(flat archs [P, L]) -> losses;
    returns the new state and [(archs, losses)]."""
    del block, score_fn
    if self.plan.whole:
      return self._search(score_archs, state)
    archs = self.candidates()
    flat = np.stack([self.space.flatten(a) for a in archs]).astype(np.int32)
    losses = np.asarray(score_archs(flat), np.float64)
    best = int(np.argmin(losses))
    state = {'pool': [[[np.asarray(p).tolist() for p in archs[best]],
                       float(losses[best])]],
             'archs': [self.space.to_string(a) for a in archs],
             'losses': [float(v) for v in losses]}
    return state, [(flat, losses)]

  def initial(self, state):
    """The whole-architecture search's first architectures: those of
    search.archs_file."""
    del state
    return self.candidates() if self.archs_file else ()

  def _search(self, score_archs, state=None):
    """search.strategy's whole-architecture search with the supernet as
    fitness; the state holds every architecture it evaluated."""
    space = self.space
    memo = Memo(supernet_fitness(space, score_archs, self.chunk))
    initial = self.initial(state)
    _, latency = search_whole(self.plan, space, memo, initial)
    archs = list(memo.cache)
    if not archs:
      raise ValueError('the search found no architecture inside the budget: '
                       'raise search.flops_budget / params_budget or lower '
                       'search.min_flops / min_params')
    losses = np.asarray([-memo.cache[t] for t in archs])
    best = space.from_string(archs[int(np.argmin(losses))])
    state = {'pool': [[[np.asarray(p).tolist() for p in best],
                       float(losses.min())]],
             'archs': archs, 'losses': [float(v) for v in losses]}
    if latency is not None:  # measured: kept with the search (checkpointed)
      state['latency'] = latency
    flat = np.stack([space.flatten(space.from_string(t)) for t in archs])
    return state, [(flat.astype(np.int32), losses)]

  def rescore(self, state, score_fn, score_archs=None):
    del score_fn
    flat = np.stack([self.space.flatten(self.space.parse(a))
                     for a in state['archs']]).astype(np.int32)
    losses = np.asarray(score_archs(flat), np.float64)
    diff = float(np.abs(losses - np.asarray(state['losses'])).max())
    state = {**state, 'losses': [float(v) for v in losses]}
    latency = state.get('latency')
    if latency and 'pareto' in latency:  # the front of the new scores
      from bossnax.searchers.latency import pareto
      ms = latency['measured_ms']
      rows = [(a, -float(l), *self.space.flops_params(self.space.parse(a)))
              for a, l in zip(state['archs'], losses) if a in ms]
      state['latency'] = {**latency, 'pareto': pareto(rows, ms)}
    return state, diff

  def best(self, state):
    return tuple(np.asarray(p, np.int32) for p in state['pool'][0][0])

  def ranking(self, state) -> Ranking:
    archs = [self.space.parse(a) for a in state['archs']]
    ranking = Ranking.from_scores(
        self.space, archs, -np.asarray(state['losses']),
        self.space.to_string(self.best(state)),
        'score = -validation ' + ('top-1 error' if self.fitness == 'error'
                                  else 'loss') +
        ' of the whole network; higher is better')
    if self.plan.whole:
      ranking.note = (f'{self.plan.strategy}: {len(archs)} architectures '
                      'evaluated by the supernet, not every one')
    if state.get('latency'):
      ranking.extra['latency'] = state['latency']
    return ranking


class GreedyArchs(WholeArchs):
  """GreedyNAS's searcher: WholeArchs whose whole-architecture search
  starts from the candidate pool's best (lowest loss first; those above the
  budget are left out), then search.archs_file's; ranking.json says how
  long the supernet trained and why it stopped, pool.json holds the pool."""

  def initial(self, state):
    pool = (state or {}).get('sampler', {}).get('pool', {}).get('losses', [])
    best = [t for t, _ in sorted(pool, key=lambda tl: tl[1])]
    return best + list(super().initial(state))

  def ranking(self, state) -> Ranking:
    ranking = super().ranking(state)
    sampler = state.get('sampler', {})
    pool = sorted(sampler.get('pool', {}).get('losses', []),
                  key=lambda tl: tl[1])
    ranking.extra['greedy'] = {
        'early_stop': state.get('early_stop'),
        'pool_size': len(pool),
        'pool_best': [{'arch': t, 'loss': l} for t, l in pool[:10]]}
    ranking.files['pool.json'] = {
        'note': 'GreedyNAS candidate pool at the end of supernet training: '
                'paths with their latest rejection loss, lowest first',
        'pool': [{'arch': t, 'loss': l} for t, l in pool]}
    return ranking
