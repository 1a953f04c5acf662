"""The evaluator: scores a batch of paths with an objective's score.

For block k and paths [P, L] that share blocks < k, every path is scored on
fixed validation view pairs by `objective.score`, which sees `run(side,
fn)`: fn mapped over every path with side `side`'s variables (online,
target, ...). The shared machinery lives here:

  * BN recalibration: each path's batch statistics (heads included) are
    recalibrated on one fixed training batch (both views) before scoring;
  * finished blocks computed once per block: their statistics recalibrated
    and their output taken once, every path starts at block k;
  * chunked vectorisation: `lax.map` over chunks of `path_chunk` paths,
    vmapped inside a chunk (memory bounded by the chunk), the batch sharded
    over devices;
  * width groups: groups of paths run in narrowed supernets
    (bossnax/width_groups.py);
  * fixed inputs: the same view pairs on every call, the last batch padded
    with weight 0.

`score_block_loop` computes the same scores one path at a time in Python:
the reference the vectorised pass is tested against.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from bossnax import parallel, width_groups
from bossnax.data import augment
from bossnax.data.fixed import padded_indices
from bossnax.objectives.base import Objective
from bossnax.spaces.base import SearchSpace


def map_paths(fn, xs, chunk: int, batching: str = 'vmap'):
  """fn(x) -> pytree over xs [P, ...] in chunks of `chunk` (vmapped inside
  a chunk, chunks one after another); returns the results stacked [P, ...].
  Paths that switch branches (batching='map') run one after another."""
  num = xs.shape[0]
  if batching != 'vmap':
    return jax.lax.map(fn, xs)
  if chunk >= num:  # no loop: XLA:CPU runs convs inside loops slowly
    return jax.vmap(fn)(xs)
  return jax.lax.map(fn, xs, batch_size=max(1, chunk))


@dataclasses.dataclass(frozen=True)
class ScoreSpec:
  """Everything static about scoring one block's paths (hashable)."""
  space: SearchSpace
  model: nn.Module
  objective: Objective
  block: int
  groups: tuple  # ((limits or None, rows tuple), ...): width groups
  path_chunk: int
  recalibrate: bool


def _narrowed(spec, tree, limits):
  return width_groups.narrow_tree(spec.space, tree, limits)


def _prefix(spec, params, stats, x, arch, mode):
  """(features of the finished blocks, batch statistics): 'calibrate'
  recalibrates the prefix's statistics on x."""
  variables = {'params': params, 'batch_stats': stats}
  method = type(spec.model).prefix
  if mode == 'calibrate':
    h, upd = spec.model.apply(variables, x, arch, block=spec.block, mode=mode,
                              method=method, mutable=['batch_stats'])
    return h, upd['batch_stats']
  return spec.model.apply(variables, x, arch, block=spec.block, mode=mode,
                          method=method), stats


def calibrate(spec: ScoreSpec, state, archs, calib):
  """(prefix statistics per side, per group the statistics of each path
  per side, stacked; None without recalibration)."""
  sides = spec.objective.score_sides(state)
  fix = spec.objective.score_stats
  need = tuple(spec.objective.calibrated_sides(len(sides)))
  if not spec.recalibrate:
    return tuple(fix(st) for _, st in sides), None
  start = spec.block > 0
  inputs, prefix_stats = [], []
  for params, stats in sides:
    h, stats = (_prefix(spec, params, stats, calib, archs[0], 'calibrate')
                if start else (calib, stats))
    inputs.append(h)
    prefix_stats.append(stats)
  per_group = []
  for limits, rows in spec.groups:
    model = width_groups.narrow_model(spec.model, spec.space, limits)
    narrow = [(_narrowed(spec, p, limits), _narrowed(spec, st, limits))
              for (p, _), st in zip(sides, prefix_stats)]

    def one(arch, model=model, narrow=narrow):
      out = []
      for side in need:
        (params, stats), h = narrow[side], inputs[side]
        _, upd = model.apply({'params': params, 'batch_stats': stats}, h,
                             arch, block=spec.block, mode='calibrate',
                             start=start, mutable=['batch_stats'])
        out.append(upd['batch_stats'])
      return tuple(out)
    got = map_paths(one, archs[np.asarray(rows)], spec.path_chunk,
                    spec.space.path_batching)
    # sides not recalibrated: None (`run` reads their statistics as is)
    per_group.append(tuple(fix(got[need.index(i)]) if i in need else None
                           for i in range(len(sides))))
  return tuple(prefix_stats), per_group


class PathRunner:
  """What `objective.score` is handed: `run(side, fn)` maps fn(apply,
  views, index) over every path being scored; `run.at(side, arch, fn)`
  calls fn(apply, views) once for one fixed whole architecture (e.g. the
  largest network, which DATA compares every path with) with that side's
  own statistics, not a recalibrated path's; `run.extra` is the
  objective's extra state (e.g. a queue of keys)."""

  def __init__(self, each, at, extra):
    self._each, self._at, self.extra = each, at, extra

  def __call__(self, side, fn):
    return self._each(side, fn)

  def at(self, side, arch, fn):
    return self._at(side, arch, fn)


def losses(spec: ScoreSpec, state, stats, archs, v1, v2, w, y):
  """Per-path score loss summed over this batch of view pairs (weights w:
  0 for padding; labels y, read only by the objectives that use labels):
  [P], in the order of `archs`."""
  prefix_stats, per_group = stats
  start = spec.block > 0
  sides = spec.objective.score_sides(state)
  views = []  # (v1, v2) as the current block sees them, per side
  for (p, _), st in zip(sides, prefix_stats):
    views.append(tuple(
        _prefix(spec, p, st, v, archs[0], 'eval')[0] if start else v
        for v in (v1, v2)))
  order = np.concatenate([np.asarray(rows) for _, rows in spec.groups])

  def run(side, fn):
    """fn(apply, views, index) over every path, in the order of `archs`."""
    outs = []
    for g, (limits, rows) in enumerate(spec.groups):
      model = width_groups.narrow_model(spec.model, spec.space, limits)
      p = _narrowed(spec, sides[side][0], limits)
      base = _narrowed(spec, prefix_stats[side], limits)
      group_stats = None if per_group is None else per_group[g][side]
      rows = jnp.asarray(np.asarray(rows))

      def one(i, model=model, p=p, base=base, group_stats=group_stats,
              rows=rows):
        # (a side not recalibrated per path: its statistics as they are;
        # score_stats is idempotent)
        st = (spec.objective.score_stats(base) if group_stats is None
              else jax.tree.map(lambda x: x[i], group_stats))
        apply = lambda x: model.apply({'params': p, 'batch_stats': st}, x,
                                      archs[rows[i]], block=spec.block,
                                      mode='eval', start=start)
        return fn(apply, views[side], rows[i])
      outs.append(map_paths(one, jnp.arange(len(rows)), spec.path_chunk,
                            spec.space.path_batching))
    cat = outs[0] if len(outs) == 1 else jax.tree.map(
        lambda *x: jnp.concatenate(x), *outs)
    if len(outs) == 1:
      return cat
    return jax.tree.map(lambda x: jnp.zeros_like(x).at[order].set(x), cat)

  def at(side, arch, fn):
    if start:
      raise ValueError('run.at scores whole architectures: block 0 only')
    # (score_stats is idempotent: without recalibration these are fixed)
    p, st = sides[side][0], spec.objective.score_stats(prefix_stats[side])
    apply = lambda x: spec.model.apply({'params': p, 'batch_stats': st}, x,
                                       jnp.asarray(arch, jnp.int32),
                                       block=spec.block, mode='eval')
    return fn(apply, views[side])
  return spec.objective.score(PathRunner(run, at, state.get('extra')), w,
                              labels=y)


@functools.lru_cache(maxsize=None)
def compiled_scorer(spec: ScoreSpec, mesh):
  """(calibrate, losses) jitted for `spec` on `mesh` (cached: equal
  settings share one compiled program)."""
  rep = parallel.replicated(mesh)
  data = parallel.batch_sharding(mesh)
  return (jax.jit(functools.partial(calibrate, spec),
                  in_shardings=(rep, rep, data), out_shardings=rep),
          jax.jit(functools.partial(losses, spec),
                  in_shardings=(rep, rep, rep, data, data, data, data),
                  out_shardings=rep))


@functools.lru_cache(maxsize=None)
def _loop_fns(model, objective, block, recalibrate):
  """(recalibrate one path, apply one path) of the per-path loop, jitted
  once per setting (the loop is also the benchmarks' baseline)."""
  @jax.jit
  def stats_fn(params, stats, arch, calib):
    if not recalibrate:
      return objective.score_stats(stats)
    _, upd = model.apply({'params': params, 'batch_stats': stats}, calib,
                         arch, block=block, mode='calibrate',
                         mutable=['batch_stats'])
    return objective.score_stats(upd['batch_stats'])

  @jax.jit
  def apply_fn(params, stats, x, arch):
    return model.apply({'params': params, 'batch_stats': stats}, x, arch,
                       block=block, mode='eval')
  return stats_fn, apply_fn


class Evaluator:
  """Scores the paths of a block (or any paths sharing the blocks before
  it) against fixed validation view pairs, with `search.*` settings."""

  def __init__(self, config, space, model, objective, mesh):
    s = config.search
    width_groups.check_space(space, s.width_groups, 'search.width_groups')
    if s.view_pairs < 1:
      raise ValueError(f'search.view_pairs={s.view_pairs}: use 1 or more '
                       'view pairs per validation image')
    self.config, self.space, self.model = config, space, model
    self.objective, self.mesh = objective, mesh
    self.view_fn = augment.make_view_fn(
        ml_collections.FrozenConfigDict(config.augment))
    self.last_metrics = {}  # per path, of the last score: e.g. accuracy
    self._resize_cache = {}  # (id of images, size) -> (images, resized)
    a = config.augment
    self.clean_view = jax.jit(functools.partial(
        augment.eval_view, mean=tuple(a.mean), std=tuple(a.std)))

  def spec(self, block, table) -> ScoreSpec:
    s = self.config.search
    groups = width_groups.score_groups(self.space, block, table,
                                       s.width_groups)
    return ScoreSpec(self.space, self.model, self.objective, block,
                     tuple((l, tuple(int(r) for r in rows))
                           for l, rows in groups),
                     s.path_chunk,
                     bool(s.recalibrate_bn) and self.space.batch_norm)

  # -- fixed inputs -----------------------------------------------------------
  def view_pairs(self, images: np.ndarray, batch_size: int, weights=None,
                 labels=None):
    """Fixed view pairs, batch by batch: same seed, same views every call.

    Yields (v1, v2, w, y); `images` (and `weights`, 1 = real image, and
    `labels`, zeros when None) are this host's part, padded here to whole
    batches with weight 0. Objectives scored on clean images
    (`score_views='clean'`) get the normalised images as both views, once.
    """
    key = jax.random.split(jax.random.key(self.config.search.seed))[0]
    local = batch_size // jax.process_count()
    idx, pad_w = padded_indices(images.shape[0], local)
    images = images[idx]
    weights = pad_w if weights is None else np.where(
        pad_w > 0, np.asarray(weights, np.float32)[idx], 0.0)
    labels = (np.zeros(len(idx), np.int32) if labels is None else
              np.asarray(labels, np.int32)[idx])
    clean = self.objective.score_views == 'clean'
    # search.view_pairs > 1: more fixed pairs per image (the first is the
    # same as with one); a path's score is its mean loss over all pairs.
    for r in range(1 if clean else self.config.search.view_pairs):
      kr = key if r == 0 else jax.random.fold_in(
          jax.random.fold_in(key, 2**31 - 1), r)
      for b, start in enumerate(range(0, images.shape[0], local)):
        part = lambda a, start=start: parallel.global_batch(
            self.mesh, a[start:start + local])
        x, w, y = part(images), part(weights), part(labels)
        views = ((self.clean_view(x),) * 2 if clean else
                 self.view_fn(jax.random.fold_in(kr, b), x))
        yield (*views, w, y)

  def calib_input(self, images: np.ndarray):
    """The fixed recalibration batch: both training views of fixed images."""
    key = jax.random.split(jax.random.key(self.config.search.seed))[1]
    x = parallel.global_batch(self.mesh, images)
    v1, v2 = self.view_fn(key, x)
    return jnp.concatenate([v1, v2])

  def block_archs(self, block, prefix):
    """(table of block `block`'s valid paths after `prefix`, the whole
    architectures [P, L])."""
    table = self.space.block_paths(block, self.space.unflatten(prefix)[:block])
    archs = np.tile(np.asarray(prefix, np.int32)[None], (len(table), 1))
    archs[:, self.space.block_slice(block)] = table
    return table, archs

  # -- scoring ----------------------------------------------------------------
  def score_archs(self, state, block, archs, val_images, calib_images,
                  val_weights=None, val_labels=None):
    """Mean score loss per path of `archs` [P, L] (they share blocks before
    `block`); lower is better. Architectures with their own input size
    (the space's `input_sizes`: an elastic resolution) are scored in groups
    of one size, on the images resized to it."""
    archs = np.asarray(archs, np.int32)
    sizes = self.space.input_sizes(archs)
    if sizes is None or (len(set(sizes.tolist())) == 1
                         and sizes[0] == val_images.shape[1]):
      return self._score_archs(state, block, archs, val_images, calib_images,
                               val_weights, val_labels)
    losses, metrics = np.zeros(len(archs)), {}
    for size in sorted(set(sizes.tolist())):
      rows = np.flatnonzero(sizes == size)
      losses[rows] = self._score_archs(
          state, block, archs[rows], self._resized(val_images, size),
          self._resized(calib_images, size), val_weights, val_labels)
      for k, v in self.last_metrics.items():
        metrics.setdefault(k, np.zeros(len(archs)))[rows] = v
    self.last_metrics = metrics
    return losses

  def _resized(self, images, size):
    """uint8 images [N, H, W, C] at size x size (bilinear, antialiased),
    kept for the next call with the same array."""
    if images.shape[1] == size and images.shape[2] == size:
      return images
    cache = self._resize_cache
    key = (id(images), size)
    if key not in cache:
      if len(cache) > 8:
        cache.clear()
      with jax.default_device(jax.local_devices(backend='cpu')[0]):
        x = jax.image.resize(jnp.asarray(images, jnp.float32),
                             (images.shape[0], size, size, images.shape[3]),
                             'bilinear', antialias=True)
        out = np.asarray(jnp.clip(jnp.round(x), 0, 255)).astype(np.uint8)
      cache[key] = (images, out)  # holds `images`: its id stays its own
    return cache[key][1]

  def _score_archs(self, state, block, archs, val_images, calib_images,
                   val_weights=None, val_labels=None):
    archs = np.asarray(archs, np.int32)
    spec = self.spec(block, archs[:, self.space.block_slice(block)])
    calib_fn, loss_fn = compiled_scorer(spec, self.mesh)
    archs_dev = jnp.asarray(archs)
    stats = calib_fn(state, archs_dev, self.calib_input(calib_images))
    total, count = None, 0.0
    for v1, v2, w, y in self.view_pairs(val_images,
                                        self.config.search.batch_size,
                                        val_weights, val_labels):
      out = loss_fn(state, stats, archs_dev, v1, v2, w, y)
      total = out if total is None else jax.tree.map(jnp.add, total, out)
      count = count + w.sum()
    return self._means(total, float(count))

  def _means(self, total, count):
    """Mean loss per path; an objective's other per-path sums (a dict
    score: 'loss' and e.g. 'correct') go to `last_metrics` as means."""
    total = jax.device_get(total)
    if isinstance(total, dict):
      self.last_metrics = {k: np.asarray(v) / count for k, v in total.items()
                           if k != 'loss'}
      return np.asarray(total['loss']) / count
    self.last_metrics = {}
    return np.asarray(total) / count

  def score_block(self, state, block, prefix, val_images, calib_images,
                  val_weights=None, val_labels=None):
    """(table [P, L_k], mean loss per path [P]) for block `block`."""
    table, archs = self.block_archs(block, prefix)
    return table, self.score_archs(state, block, archs, val_images,
                                   calib_images, val_weights, val_labels)

  def score_block_loop(self, state, block, prefix, val_images, calib_images,
                       val_weights=None, val_labels=None):
    """The same scores, one path at a time in Python: every path from the
    image (no shared prefix), full width, recalibrated on its own."""
    s = self.config.search
    table, archs = self.block_archs(block, prefix)
    stats_fn, apply_fn = _loop_fns(
        self.model, self.objective, block,
        bool(s.recalibrate_bn) and self.space.batch_norm)
    calib = self.calib_input(calib_images)
    sides = self.objective.score_sides(state)
    need = tuple(self.objective.calibrated_sides(len(sides)))
    per_path = [[stats_fn(p, st, a, calib) if i in need else
                 self.objective.score_stats(st)
                 for i, (p, st) in enumerate(sides)] for a in archs]
    totals, count = None, 0.0
    for v1, v2, w, y in self.view_pairs(val_images, s.batch_size,
                                        val_weights, val_labels):
      def run(side, fn):
        outs = [fn(lambda x, a=a, st=st: apply_fn(sides[side][0], st[side],
                                                   x, a), (v1, v2), i)
                for i, (a, st) in enumerate(zip(archs, per_path))]
        return jax.tree.map(lambda *x: jnp.stack(x), *outs)

      def at(side, arch, fn):
        p, st = sides[side]
        return fn(lambda x: apply_fn(p, self.objective.score_stats(st), x,
                                     jnp.asarray(arch, jnp.int32)), (v1, v2))
      out = jax.device_get(self.objective.score(
          PathRunner(run, at, state.get('extra')), w, labels=y))
      totals = out if totals is None else jax.tree.map(np.add, totals, out)
      count += float(w.sum())
    return table, self._means(totals, count)
