"""Exact best-k architectures under a cost budget from block score tables
(DNA's traversal of its block tables under a budget, made exact).

When an architecture's score is a sum of per-block scores (block-wise
methods: -sum_k lambda_k * loss_k) and its cost a sum of per-block costs
given each block's input (the space's `block_costs` / `end_cost` chain:
MBConv's layers, HyTra along its scales), the k best architectures under a
budget are found by dynamic programming over the blocks, never enumerating
the space: 16 x 256^4 MBConv architectures in seconds on a CPU.

The DP keeps, for each state a prefix leaves in (HyTra: the stage it ends
at), only prefixes that fewer than k others beat on both the budgeted cost
and the loss: any completion of a prefix beaten by k others is beaten by
the same completion of each of them, which all fit the budget too. It keeps
the first k non-dominated layers of (cost, loss), a superset of those, in
k vectorised passes; and it drops prefixes that no completion brings under
the budget. With k = 1 and no budget the survivors are the exact Pareto
front of score against cost.

Which table scores block k: the table of the best pool prefix that leaves
in block k's input state, else the best prefix's (with search.top_n = 1,
the default, each block has one table and this is exactly the exhaustive
ranking's score; with a larger pool an architecture whose own prefix was
scored gets that table in the exhaustive ranking, not here).
"""

from __future__ import annotations

import logging

import numpy as np

from bossnax.searchers.ranking import cost_front

log = logging.getLogger(__name__)

COSTS = ('flops', 'params')


class NotAdditive(ValueError):
  """The space's cost is not a chain of block costs (NATS: a channel's
  width changes the layers on both sides of it)."""


def k_frontier(cost, loss, k):
  """Indices of the points of the first k non-dominated layers of
  (cost, loss), both minimised (every point fewer than k others beat on
  both is among them); ties are broken by position."""
  cost, loss = np.asarray(cost), np.asarray(loss)
  rest = np.lexsort((np.arange(len(cost)), loss, cost))
  keep = []
  for _ in range(k):
    if not rest.size:
      break
    l = loss[rest]
    best_before = np.concatenate([[np.inf], np.fmin.accumulate(l)[:-1]])
    front = l < best_before
    keep.append(rest[front])
    rest = rest[~front]
  return np.sort(np.concatenate(keep)) if keep else np.zeros(0, int)


class _Chain:
  """Per block and input state: the scored paths valid there, their losses,
  costs and the states they leave in; and the least cost of completing an
  architecture from each state."""

  def __init__(self, space, block_tables, lambdas):
    self.space, self.K = space, space.num_blocks
    tables = [list(by_prefix.items()) for by_prefix in block_tables]
    # The state each pool prefix leaves in, to pick the table of a state.
    table_of = []
    for k in range(self.K):
      by_state = {}
      for key, (paths, losses) in tables[k]:
        prefix = space.unflatten(list(key) + [0] * (
            space.num_layers - len(key)))[:k]
        by_state.setdefault(self.state_after(prefix), (paths, losses))
      table_of.append((by_state, tables[k][0][1]))
    self.items = [{} for _ in range(self.K)]  # k -> state -> item arrays
    frontier = {None: ()}  # state -> a prefix that leaves in it
    for k in range(self.K):
      nxt = {}
      for state, prefix in frontier.items():
        by_state, default = table_of[k]
        paths, losses = by_state.get(state, default)
        valid = {tuple(int(v) for v in p)
                 for p in space.block_paths(k, prefix)}
        ok = np.asarray([tuple(int(v) for v in p) in valid for p in paths],
                        bool)
        finite = np.isfinite(np.asarray(losses, np.float64))
        if not finite.all():  # a diverged path: it cannot be ranked
          log.warning('block %d: %d paths with a non-finite loss left out '
                      'of the budgeted search', k, int((~finite).sum()))
        ok &= finite
        paths, losses = np.asarray(paths)[ok], np.asarray(losses)[ok]
        if not len(paths):
          continue
        cost, outs = space.block_costs(k, paths, state)
        self.items[k][state] = (paths, lambdas[k] * losses,
                                np.asarray(cost, np.int64), outs)
        for p, o in zip(paths, outs):
          nxt.setdefault(o, prefix + (np.asarray(p, np.int32),))
      frontier = nxt
    # least completion cost (both costs) from each state before block k
    self.rest = [dict() for _ in range(self.K + 1)]
    for state in frontier:
      self.rest[self.K][state] = np.asarray(space.end_cost(state), np.int64)
    for k in reversed(range(self.K)):
      for state, (_, _, cost, outs) in self.items[k].items():
        tails = [cost[i] + self.rest[k + 1][o] for i, o in enumerate(outs)
                 if o in self.rest[k + 1]]
        if tails:
          self.rest[k][state] = np.min(tails, 0)

  def state_after(self, prefix):
    state = None
    for k, path in enumerate(prefix):
      state = self.space.block_costs(k, np.asarray(path)[None], state)[1][0]
    return state


def _dp(space, block_tables, lambdas, limit, j, k):
  """Every surviving complete architecture within `limit` on cost j:
  [(arch, score, flops, params)]."""
  try:
    chain = _Chain(space, block_tables, lambdas)
  except NotImplementedError as e:
    raise NotAdditive(f'{e}: blockwise_budget needs an additive cost; use '
                      '--config.search.strategy=exhaustive or evolution'
                      ) from None
  # prefixes per state: (costs [m, 2], losses [m], one [m, L_b] array of
  # paths per block so far)
  parts = {None: (np.zeros((1, 2), np.int64), np.zeros(1), [])}
  for b in range(chain.K):
    grouped = {}
    for state, (pc, pl, ph) in parts.items():
      if state not in chain.items[b]:
        continue
      paths, losses, bc, outs = chain.items[b][state]
      for o in dict.fromkeys(outs):
        if o not in chain.rest[b + 1]:
          continue
        sel = np.asarray([x == o for x in outs])
        c = pc[:, None, :] + bc[None, sel, :]  # [m, n, 2]
        l = pl[:, None] + losses[None, sel]
        mi, ni = np.nonzero(c[..., j] + chain.rest[b + 1][o][j] <= limit)
        grouped.setdefault(o, []).append(
            (c[mi, ni], l[mi, ni], [h[mi] for h in ph] + [paths[sel][ni]]))
    parts = {}
    for o, pieces in grouped.items():
      c = np.concatenate([p[0] for p in pieces])
      l = np.concatenate([p[1] for p in pieces])
      keep = k_frontier(c[:, j], l, k)
      parts[o] = (c[keep], l[keep], [np.concatenate(
          [p[2][i] for p in pieces])[keep] for i in range(b + 1)])
  rows = []
  for state, (c, l, hist) in parts.items():
    total = c + chain.rest[chain.K][state]
    for i in np.flatnonzero(total[:, j] <= limit):
      rows.append((tuple(h[i].astype(np.int32) for h in hist), -float(l[i]),
                   int(total[i, 0]), int(total[i, 1])))
  return rows


def _check(space, rows):
  for arch, _, flops, params in rows:  # the chain must agree with the counter
    if (flops, params) != tuple(space.flops_params(arch)):
      raise AssertionError(f'{space.name}: the block costs of '
                           f'{space.to_string(arch)} do not add up to its '
                           'flops_params')
  return rows


def search(space, block_tables, lambdas, *, budget=0.0, cost='flops', k=10):
  """The k best architectures with `cost` (MAdds or params, in millions)
  at most `budget` (0 = none): [(arch, score, flops, params)], best first
  (score = -sum_k lambda_k * loss_k). Raises ValueError where the space's
  cost is not a chain of block costs."""
  if cost not in COSTS:
    raise ValueError(f'blockwise_budget cost {cost!r}: use one of {COSTS}')
  j = COSTS.index(cost)
  rows = _dp(space, block_tables, lambdas, budget * 1e6 if budget else np.inf,
             j, k)
  rows.sort(key=lambda r: (-r[1], r[2 + j]))
  return _check(space, rows[:k])


def pareto(space, block_tables, lambdas, cost='flops'):
  """The exact Pareto front of score against `cost` over the whole space:
  [(arch, score, flops, params)], cheapest first."""
  j = COSTS.index(cost)
  # with k = 1 every state keeps exactly its non-dominated prefixes (a
  # dominated prefix's completions are dominated by the same completions)
  rows = _dp(space, block_tables, lambdas, np.inf, j, 1)
  return _check(space, cost_front(rows, cost))


def brute_force(space, block_tables, lambdas, *, budget=0.0, cost='flops',
                k=10):
  """`search` by enumerating the space (tests, small spaces)."""
  from bossnax.searchers.blockwise import architecture_scores  # (a cycle)
  archs, scores = architecture_scores(space, block_tables, lambdas)
  j = COSTS.index(cost)
  rows = []
  for a, s in zip(archs, scores):
    f, p = space.flops_params(a)
    if not budget or (f, p)[j] <= budget * 1e6:
      rows.append((tuple(np.asarray(x, np.int32) for x in a), float(s), f, p))
  rows.sort(key=lambda r: (-r[1], r[2 + j]))
  return rows[:k]
