"""Population-centre search (BossNAS Eq. 5-6), vectorised over paths.

For block k, every candidate path p (after the chosen prefix) is scored on a
fixed set of validation view pairs (v1, v2):

  centre(v)  = mean_p  n(z_p^target(v))       (n = L2 normalisation; the
                                               official code averages raw z)
  score_p    = mean_x  [ L(q_p(v1), centre(v2)) + L(q_p(v2), centre(v1)) ]

with L = 2 - 2cos (the training loss) and q_p the online prediction; lower is
better. Before scoring, each path's batch-norm statistics (heads included)
are recalibrated on one fixed training batch. All paths of a block run in one
compiled pass: `lax.map` over chunks of `path_chunk` paths, vmapped inside a
chunk, so memory is bounded by the chunk; the batch is sharded over devices.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from bossnax import parallel, ssl, width_groups
from bossnax.data import augment


def map_paths(fn, archs, chunk: int, batching: str = 'vmap'):
  """fn(arch) -> pytree, over archs [P, L] in chunks; returns stacked [P, ...].

  Pads P up to a multiple of `chunk` with copies of the last path and drops
  the padded results.
  """
  num = archs.shape[0]
  chunk = max(1, min(chunk, num))
  pad = (-num) % chunk
  if pad:
    archs = jnp.concatenate([archs, jnp.repeat(archs[-1:], pad, 0)])
  chunks = archs.reshape(-1, chunk, archs.shape[-1])
  inner = jax.vmap(fn) if batching == 'vmap' else (
      lambda a: jax.lax.map(fn, a))
  if chunks.shape[0] == 1:  # no loop: XLA:CPU runs convs in loops slowly
    out = jax.tree.map(lambda x: x[None], inner(chunks[0]))
  else:
    out = jax.lax.map(inner, chunks)
  return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:])[:num], out)


class Scorer:
  """Scores every path of a block against the population centre.

  The finished blocks' output is the same for every path (same views, same
  prefix): it is computed, and its batch statistics recalibrated, once per
  block rather than once per path. `search.width_groups` > 1 runs groups of
  paths in narrowed supernets (bossnax/width_groups.py).
  """

  def __init__(self, config, space, model, mesh):
    self.config = config
    self.space = space
    self.model = model
    self.mesh = mesh
    self.view_fn = augment.make_view_fn(config.augment)
    width_groups.check_space(space, config.search.width_groups,
                             'search.width_groups')
    if config.search.view_pairs < 1:
      raise ValueError(f'search.view_pairs={config.search.view_pairs}: use 1 '
                       'or more view pairs per validation image')
    self._fns = {}

  # -- the pieces one path needs ----------------------------------------------
  def _stats(self, params, stats, arch, calib, block):
    """Batch statistics of one path recalibrated on the fixed batch."""
    if not self.config.search.recalibrate_bn:
      return stats
    _, upd = self.model.apply({'params': params, 'batch_stats': stats}, calib,
                              arch, block=block, mode='calibrate',
                              mutable=['batch_stats'])
    return upd['batch_stats']

  def _apply(self, params, stats, x, arch, block):
    return self.model.apply({'params': params, 'batch_stats': stats}, x, arch,
                            block=block, mode='eval')

  # -- vectorised pass ------------------------------------------------------------
  def _narrowed(self, tree, limits):
    return width_groups.narrow_tree(self.space, tree, limits)

  def _group_model(self, limits):
    return width_groups.narrow_model(self.model, self.space, limits)

  def _prefix(self, params, stats, x, arch, block, mode):
    """(features of the finished blocks, batch statistics): 'calibrate'
    recalibrates the prefix's statistics on x."""
    variables = {'params': params, 'batch_stats': stats}
    if mode == 'calibrate':
      h, upd = self.model.apply(variables, x, arch, block=block, mode=mode,
                                method=self.model.prefix,
                                mutable=['batch_stats'])
      return h, upd['batch_stats']
    return self.model.apply(variables, x, arch, block=block, mode=mode,
                            method=self.model.prefix), stats

  def _calibrate_all(self, state, archs, calib, *, block, groups):
    """(prefix statistics (online, target), per group the statistics of
    each path (online, target), stacked; None without recalibration)."""
    s = self.config.search
    sides = ((state['params'], state['batch_stats']),
             (state['target_params'], state['target_batch_stats']))
    if not s.recalibrate_bn:
      return tuple(st for _, st in sides), None
    start = block > 0
    inputs, prefix_stats = [], []
    for params, stats in sides:
      h, stats = (self._prefix(params, stats, calib, archs[0], block,
                               'calibrate') if start else (calib, stats))
      inputs.append(h)
      prefix_stats.append(stats)
    per_group = []
    for limits, rows in groups:
      model = self._group_model(limits)
      narrow = [(self._narrowed(p, limits), self._narrowed(st, limits))
                for (p, _), st in zip(sides, prefix_stats)]

      def one(arch, model=model, narrow=narrow):
        out = []
        for (params, stats), h in zip(narrow, inputs):
          _, upd = model.apply({'params': params, 'batch_stats': stats}, h,
                               arch, block=block, mode='calibrate',
                               start=start, mutable=['batch_stats'])
          out.append(upd['batch_stats'])
        return tuple(out)
      per_group.append(map_paths(one, archs[rows], s.path_chunk,
                                 self.space.path_batching))
    return tuple(prefix_stats), per_group

  def _losses(self, state, stats, archs, v1, v2, w, *, block, groups):
    """Per-path loss summed over this batch of view pairs (weights w: 0 for
    padding): [P], in table order."""
    s = self.config.search
    chunk, batching = s.path_chunk, self.space.path_batching
    prefix_stats, per_group = stats
    start = block > 0
    params = (state['params'], state['target_params'])
    views = []  # (v1, v2) as the current block sees them, online and target
    for p, st in zip(params, prefix_stats):
      views.append(tuple(
          self._prefix(p, st, v, archs[0], block, 'eval')[0] if start else v
          for v in (v1, v2)))
    norm = ssl.normalize if s.centre == 'normalized' else (
        lambda z: z.astype(jnp.float32))

    def run(side, g, fn):
      """fn(apply, (x1, x2)) over the paths of group g."""
      limits, rows = groups[g]
      model = self._group_model(limits)
      p = self._narrowed(params[side], limits)
      st_all = (None if per_group is None else per_group[g][side])
      base = self._narrowed(prefix_stats[side], limits)

      def one(i):
        st = base if st_all is None else jax.tree.map(lambda x: x[i], st_all)
        apply = lambda x: model.apply({'params': p, 'batch_stats': st}, x,
                                      archs[rows][i], block=block,
                                      mode='eval', start=start)
        return fn(apply, views[side])
      idx = jnp.arange(len(rows))
      return map_paths(lambda a: one(a[0]), idx[:, None], chunk, batching)

    target = [run(1, g, lambda ap, xs: tuple(norm(ap(x)[0]) for x in xs))
              for g in range(len(groups))]
    c1 = jnp.concatenate([z1 for z1, _ in target]).mean(0)
    c2 = jnp.concatenate([z2 for _, z2 in target]).mean(0)

    def online(apply, xs):
      q1, q2 = apply(xs[0])[1], apply(xs[1])[1]
      loss = ssl.regression_loss(q1, c2) + ssl.regression_loss(q2, c1)
      return (loss * w).sum()
    losses = jnp.concatenate([run(0, g, online) for g in range(len(groups))])
    order = np.concatenate([rows for _, rows in groups])
    return jnp.zeros_like(losses).at[order].set(losses)

  def _compiled(self, block, table):
    groups = width_groups.score_groups(self.space, block, table,
                                       self.config.search.width_groups)
    key = (block, tuple((l, tuple(r)) for l, r in groups))
    if key not in self._fns:
      rep = parallel.replicated(self.mesh)
      data = parallel.batch_sharding(self.mesh)
      calib = jax.jit(functools.partial(self._calibrate_all, block=block,
                                        groups=groups),
                      in_shardings=(rep, rep, data), out_shardings=rep)
      losses = jax.jit(functools.partial(self._losses, block=block,
                                         groups=groups),
                       in_shardings=(rep, rep, rep, data, data, data),
                       out_shardings=rep)
      self._fns[key] = (calib, losses)
    return self._fns[key]

  # -- fixed inputs -----------------------------------------------------------------
  def view_pairs(self, images: np.ndarray, batch_size: int, weights=None):
    """Fixed view pairs, batch by batch: same seed, same views every call.

    Yields (v1, v2, w): the last batch is padded with copies of the last
    image and weight 0, so every validation image counts and no shape
    changes (one compiled program). `images` (and `weights`, 1 = real image)
    are this host's part.
    """
    key = jax.random.split(jax.random.key(self.config.search.seed))[0]
    local = batch_size // jax.process_count()
    if weights is None:
      weights = np.ones(images.shape[0], np.float32)
    pad = (-images.shape[0]) % local
    if pad:
      images = np.concatenate([images, np.repeat(images[-1:], pad, 0)])
      weights = np.concatenate([weights, np.zeros(pad, np.float32)])
    # search.view_pairs > 1: more fixed pairs per image (the first is the
    # same as with one); a path's score is its mean loss over all pairs.
    for r in range(self.config.search.view_pairs):
      kr = key if r == 0 else jax.random.fold_in(
          jax.random.fold_in(key, 2**31 - 1), r)
      for b, start in enumerate(range(0, images.shape[0], local)):
        x = parallel.global_batch(self.mesh, images[start:start + local])
        w = parallel.global_batch(self.mesh, weights[start:start + local])
        yield (*self.view_fn(jax.random.fold_in(kr, b), x), w)

  def calib_input(self, images: np.ndarray):
    """The fixed recalibration batch: both training views of fixed images."""
    key = jax.random.split(jax.random.key(self.config.search.seed))[1]
    x = parallel.global_batch(self.mesh, images)
    v1, v2 = self.view_fn(key, x)
    return jnp.concatenate([v1, v2])

  def block_archs(self, block, prefix):
    table = self.space.block_paths(block, self.space.unflatten(prefix)[:block])
    archs = np.tile(np.asarray(prefix, np.int32)[None], (len(table), 1))
    archs[:, self.space.block_slice(block)] = table
    return table, archs

  # -- entry points -----------------------------------------------------------------
  def score_block(self, state, block, prefix, val_images, calib_images,
                  val_weights=None):
    """(table [P, L_k], mean loss per path [P]) for block `block`."""
    s = self.config.search
    table, archs = self.block_archs(block, prefix)
    calib_fn, loss_fn = self._compiled(block, table)
    archs_dev = jnp.asarray(archs)
    stats = calib_fn(state, archs_dev, self.calib_input(calib_images))
    total, count = 0.0, 0.0
    for v1, v2, w in self.view_pairs(val_images, s.batch_size, val_weights):
      total = total + loss_fn(state, stats, archs_dev, v1, v2, w)
      count = count + w.sum()
    return table, np.asarray(total) / float(count)

  def score_block_loop(self, state, block, prefix, val_images, calib_images,
                       val_weights=None):
    """The same scores, one path at a time in Python (reference and
    benchmark baseline)."""
    s = self.config.search
    table, archs = self.block_archs(block, prefix)
    stats_fn = jax.jit(functools.partial(self._stats, block=block))
    apply_fn = jax.jit(functools.partial(self._apply, block=block))
    calib = self.calib_input(calib_images)
    per_path = [(stats_fn(state['params'], state['batch_stats'], a, calib),
                 stats_fn(state['target_params'], state['target_batch_stats'],
                          a, calib)) for a in archs]
    norm = ssl.normalize if s.centre == 'normalized' else (
        lambda z: z.astype(jnp.float32))
    totals = np.zeros(len(archs))
    count = 0.0
    for v1, v2, w in self.view_pairs(val_images, s.batch_size, val_weights):
      zs1, zs2 = [], []
      for a, (_, st) in zip(archs, per_path):
        zs1.append(norm(apply_fn(state['target_params'], st, v1, a)[0]))
        zs2.append(norm(apply_fn(state['target_params'], st, v2, a)[0]))
      c1, c2 = sum(zs1) / len(zs1), sum(zs2) / len(zs2)
      for p, (a, (st, _)) in enumerate(zip(archs, per_path)):
        q1 = apply_fn(state['params'], st, v1, a)[1]
        q2 = apply_fn(state['params'], st, v2, a)[1]
        totals[p] += float(((ssl.regression_loss(q1, c2) +
                             ssl.regression_loss(q2, c1)) * w).sum())
      count += float(w.sum())
    return table, totals / count


# ---------------------------------------------------------------------------
# From block tables to architectures

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


def architecture_scores(space, block_tables, lambdas):
  """Score every architecture of an enumerable space (higher = better).

  block_tables[k] maps a prefix key (tuple of ints of blocks < k) to
  (table, losses); an architecture takes block k's loss from the table of its
  own prefix when that prefix was scored, else from the best prefix's table
  (the first entry). Score = -sum_k lambda_k * loss_k.
  """
  lookups = []
  for k, by_prefix in enumerate(block_tables):
    maps = {}
    for prefix_key, (table, losses) in by_prefix.items():
      maps[prefix_key] = {tuple(int(v) for v in row): float(l)
                          for row, l in zip(table, losses)}
    lookups.append((maps, next(iter(maps.values()))))
  archs, scores = [], []
  for arch in space.enumerate():
    total = 0.0
    ok = True
    for k, (maps, best) in enumerate(lookups):
      key = tuple(int(v) for a in arch[:k] for v in a)
      table = maps.get(key, best)
      loss = table.get(tuple(int(v) for v in arch[k]))
      if loss is None:
        ok = False
        break
      total += lambdas[k] * loss
    if ok:
      archs.append(arch)
      scores.append(-total)
  return archs, np.asarray(scores)
