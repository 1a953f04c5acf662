"""Block-wise beam search over block score tables (BossNAS Sec. 3.3).

After block k is trained, every path of block k is scored after each prefix
of the pool (the `top_n` best prefixes so far); the pool is extended by one
block and cut back to `top_n` by accumulated weighted loss. Architectures of
an enumerable space are then ranked exhaustively: each takes block k's loss
from the table of its own prefix where that prefix was scored, else from the
best prefix's table. Score = -sum_k lambda_k * loss_k (higher is better).

The searcher's state (pool and tables) is JSON, kept in the checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from bossnax.searchers import budgeted
from bossnax.searchers.ranking import Ranking
from bossnax.searchers.strategies import Plan, search_whole
from bossnax.searchers.whole import load_archs

log = logging.getLogger(__name__)


def beam(pool, tables, lambdas, top_n):
  """Extend the prefix pool with one more block: keep the `top_n` best
  (prefix + path) by accumulated weighted loss.

  pool: list of (prefix paths tuple, accumulated loss); tables: one
  (table, losses) per pool entry, same order.
  """
  cands = []
  for (paths, acc), (table, losses) in zip(pool, tables):
    k = len(paths)
    for row, loss in zip(table, losses):
      cands.append((paths + (np.asarray(row),), acc + lambdas[k] * loss))
  cands.sort(key=lambda c: c[1])
  return cands[:top_n]


class BlockScores:
  """Architecture scores from block tables (higher = better): block k's
  loss from the table of the architecture's own prefix where that prefix
  was scored, else from the best prefix's.

  block_tables[k] maps a prefix key (tuple of ints of blocks < k) to
  (table, losses), the best prefix's first.
  """

  def __init__(self, space, block_tables, lambdas):
    self.space, self.lambdas = space, lambdas
    self.lookups = []
    for by_prefix in block_tables:
      maps = {}
      for prefix_key, (table, losses) in by_prefix.items():
        maps[prefix_key] = {tuple(int(v) for v in row): float(l)
                            for row, l in zip(table, losses)}
      self.lookups.append((maps, next(iter(maps.values()))))

  def score(self, arch):
    """The score of `arch`, or None where a block's path was not scored."""
    total = 0.0
    for k, (maps, best) in enumerate(self.lookups):
      key = tuple(int(v) for a in arch[:k] for v in a)
      loss = maps.get(key, best).get(tuple(int(v) for v in arch[k]))
      if loss is None:
        return None
      total += self.lambdas[k] * loss
    return -total

  # the fitness protocol of searchers/evolution.py (architecture strings)
  def available(self, text):
    return self.score(self.space.from_string(text)) is not None

  def __call__(self, texts):
    return [self.score(self.space.from_string(t)) for t in texts]


def architecture_scores(space, block_tables, lambdas, archs=None):
  """Score every architecture of an enumerable space, or those of `archs`
  (higher = better; `BlockScores`): (scored archs, scores)."""
  scorer = BlockScores(space, block_tables, lambdas)
  candidates = space.enumerate() if archs is None else archs
  archs, scores = [], []
  for arch in candidates:
    score = scorer.score(arch)
    if score is not None:
      archs.append(arch)
      scores.append(score)
  return archs, np.asarray(scores)


def check_lambdas(lambdas, num_blocks):
  lam = tuple(lambdas) or (1.0,) * num_blocks
  if len(lam) != num_blocks:
    raise ValueError(f'search.lambdas has {len(lam)} values for {num_blocks} '
                     f'blocks: pass --config.search.lambdas="{(1.0,) * num_blocks}"')
  return lam


class BlockwiseBeam:
  """The searcher of block-wise methods: its state is {'pool', 'tables'}."""

  def __init__(self, space, lambdas=(), top_n=1, max_archs=1_000_000,
               archs_file='', plan=None):
    """`archs_file`: where the space is too large to enumerate, score the
    architectures of this benchmark file (read by `space.benchmark`) and
    the best one found. `plan`: search.strategy and its settings
    (strategies.Plan)."""
    self.space = space
    self.lambdas = check_lambdas(lambdas, space.num_blocks)
    self.top_n, self.max_archs = top_n, max_archs
    self.archs_file = archs_file
    self.plan = plan or Plan()

  @staticmethod
  def initial_state():
    return {'pool': [[[], 0.0]], 'tables': {}}

  def pool(self, state):
    """[(prefix paths tuple, accumulated loss)], best first."""
    return [(tuple(np.asarray(p, np.int32) for p in paths), acc)
            for paths, acc in state['pool']]

  def prefix_vector(self, paths):
    """Flat arch vector with the blocks of `paths` set (the rest 0)."""
    flat = np.zeros(self.space.num_layers, np.int32)
    for k, p in enumerate(paths):
      flat[self.space.block_slice(k)] = p
    return flat

  def prefixes(self, state):
    """The prefix vectors block k trains behind ([n, L]; step s uses row
    s % n)."""
    return np.stack([self.prefix_vector(p) for p, _ in self.pool(state)])

  def search_block(self, state, block, score_fn, score_archs=None):
    """Score block `block` after every prefix of the pool with
    score_fn(prefix vector) -> (table, losses); returns the new state and
    the tables in pool order (`score_archs`, whole architectures, is for
    one-shot searchers)."""
    del score_archs
    pool = self.pool(state)
    state = {'pool': state['pool'], 'tables': dict(state['tables'])}
    entries = list(state['tables'].get(str(block), []))
    tables = []
    for paths, _ in pool:
      table, losses = score_fn(self.prefix_vector(paths))
      tables.append((table, losses))
      entries.append({'prefix': [np.asarray(p).tolist() for p in paths],
                      'paths': np.asarray(table).tolist(),
                      'losses': [float(l) for l in losses]})
    state['tables'][str(block)] = entries
    new_pool = beam(pool, tables, self.lambdas, self.top_n)
    state['pool'] = [[[p.tolist() for p in paths], float(acc)]
                     for paths, acc in new_pool]
    return state, tables

  def rescore(self, state, score_fn, score_archs=None):
    """Score every table the search recorded again, under the same prefixes
    (training was conditioned on them), with score_fn(block, prefix vector)
    -> (table, losses); returns (new state, largest change of a loss)."""
    del score_archs
    tables, diff = {}, 0.0
    for k, entries in state['tables'].items():
      tables[k] = []
      for entry in entries:
        paths = [np.asarray(p, np.int32) for p in entry['prefix']]
        table, losses = score_fn(int(k), self.prefix_vector(paths))
        if np.asarray(table).tolist() != entry['paths']:
          raise ValueError(f'block {k} paths differ from the run: pass the '
                           'config the run was trained with')
        diff = max(diff, float(np.abs(np.asarray(losses) - np.asarray(
            entry['losses'])).max()))
        tables[k].append({**entry, 'losses': [float(v) for v in losses]})
    return {**state, 'tables': tables}, diff

  def best(self, state):
    """The best architecture found (the first of the final pool)."""
    return tuple(np.asarray(p, np.int32) for p in state['pool'][0][0])

  def block_tables(self, state):
    """state['tables'] -> per block {prefix key: (table, losses)}."""
    out = []
    for k in range(self.space.num_blocks):
      by_prefix = {}
      for entry in state['tables'][str(k)]:
        key = tuple(int(v) for p in entry['prefix'] for v in p)
        by_prefix[key] = (np.asarray(entry['paths'], np.int32),
                          np.asarray(entry['losses']))
      out.append(by_prefix)
    return out

  def ranking(self, state) -> Ranking:
    space, plan = self.space, self.plan
    best = space.to_string(self.best(state))
    sign = 'score = -sum_k lambda_k * block_loss_k; higher is better'
    tables = self.block_tables(state)
    too_many = space.count() > self.max_archs
    if plan.strategy == 'exhaustive' and too_many:
      raise ValueError(f'search.strategy=exhaustive: {space.count()} '
                       f'architectures are too many; use blockwise_budget '
                       'or evolution')
    # search.archs_file: scored beside a search (never instead of an
    # exhaustive ranking)
    listed = ([self.best(state)] + load_archs(space, self.archs_file)
              if self.archs_file and (too_many or plan.strategy not in (
                  'auto', 'exhaustive'))
              else None)
    fallback = ''
    if plan.strategy == 'blockwise_budget':
      try:
        return self._budgeted(tables, listed, best, sign)
      except budgeted.NotAdditive as e:  # say so, and fall back
        plan = dataclasses.replace(plan, strategy=(
            'evolution' if too_many else 'exhaustive'))
        fallback = f'{e}: fell back to {plan.strategy}'
        log.warning('%s', fallback)
        if not too_many:
          listed = None  # exhaustive: every architecture
    if plan.whole:
      rows, latency = search_whole(plan, space, BlockScores(
          space, tables, self.lambdas))
      if listed:
        rows += Ranking.from_scores(space, *architecture_scores(
            space, tables, self.lambdas, listed), best, sign).rows
      return Ranking(space, _unique(rows), best, sign, extra={
          'latency': latency} if latency else {}, note=fallback or (
          f'{plan.strategy}: {plan.evaluations} evaluations of the block '
          'tables per budget'))
    if too_many:  # auto: add the exact best and front where costs add up
      try:
        ranking = self._budgeted(tables, listed, best, sign)
        ranking.note = (
            f'{space.count()} architectures: the listed ones '
            '(search.archs_file), the exact best search.top_k under each '
            'budget and the exact Pareto front (as search.strategy='
            'blockwise_budget)' + ranking.note.partition(
                'not every architecture')[2])
        return ranking
      except budgeted.NotAdditive:
        pass
    if too_many and not listed:
      return Ranking(space, [], best, sign, note=(
          f'{space.count()} architectures: too many to write them all; the '
          'best path of every block is above (search.archs_file lists '
          'architectures to score; search.strategy=blockwise_budget finds '
          'the best under each budget)'))
    archs, scores = architecture_scores(space, tables, self.lambdas, listed)
    ranking = Ranking.from_scores(space, archs, scores, best, sign)
    ranking.note = fallback
    return ranking

  def block_scorer(self, state) -> BlockScores:
    """Architecture scores from the state's block tables."""
    return BlockScores(self.space, self.block_tables(state), self.lambdas)

  def _budgeted(self, tables, listed, best, sign):
    """blockwise_budget: the best top_k under every budget, the Pareto
    front (and the listed architectures), all exact."""
    space, plan = self.space, self.plan
    rows, inexact = [], ''
    for flops, params in plan.budgets:
      if flops and params:  # auto only: Plan refuses it for the strategy
        inexact = (f'; the budget of {flops} M MAdds and {params} M params '
                   'bounds both costs, so its best is the best of these '
                   'rows, not exact')
        continue
      rows += budgeted.search(space, tables, self.lambdas,
                              budget=flops or params,
                              cost='params' if params else 'flops',
                              k=plan.top_k)
    front = budgeted.pareto(space, tables, self.lambdas)
    rows = [(space.to_string(a), s, f, p) for a, s, f, p in rows + front]
    if listed:
      rows += Ranking.from_scores(space, *architecture_scores(
          space, tables, self.lambdas, listed), best, sign).rows
    front = [(space.to_string(a), s, f, p) for a, s, f, p in front]
    return Ranking(space, _unique(rows), best, sign, note=(
        'blockwise_budget: the exact best under each budget and the exact '
        'Pareto front, not every architecture' + inexact), pareto=front)


def _unique(rows):
  """Rows once each, best first."""
  return sorted({r[0]: r for r in rows}.values(), key=lambda r: -r[1])
