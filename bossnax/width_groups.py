"""Grouping paths by width, so each group runs at its own width.

A channel supernet computes every path at full width with masks: a path of
8-channel layers costs what the 64-channel one costs. A space that can
*narrow* its supernet (`space.narrow`, `space.narrow_variables`: NATS) gives,
for per-layer limits, the supernet that keeps only each layer's first
`limits[i]` choices; it computes the same thing for every path within the
limits (the channels it drops are the ones those paths mask to zero). Paths
grouped by width bucket then run in their group's narrowed supernet; the
groups are static, so they stay one compiled program (one subprogram per
group).

  scoring   every path of a block is known: `score_groups` buckets each
            layer of the block (search.width_groups).
  training  the sampled paths are data: `stratify` makes slot j of the K
            sampled paths take the first layer of the block from bucket
            j // (K/G), so `train_groups` are static (train.width_groups).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def check_space(space, groups: int, what: str):
  if groups < 1:
    raise ValueError(f'{what}={groups}: use 1 (no groups) or more')
  if groups > 1 and not hasattr(space, 'narrow'):
    raise ValueError(f'{what}={groups}: the {space.name} space cannot narrow '
                     f'its supernet; set {what}=1')


def _bounds(n: int, groups: int) -> np.ndarray:
  """Upper choice limit of each of `groups` buckets of n choices."""
  g = min(groups, n)
  return np.array([-(-(b + 1) * n // g) for b in range(g)])


def score_groups(space, block: int, table: np.ndarray, groups: int):
  """Static groups of a block's paths: [(limits, rows)].

  Each layer's choices are split into `groups` buckets (widest last); paths
  whose choices fall in the same buckets form a group. limits: choices kept
  per layer of the whole space (None: no narrowing); rows: indices into
  `table`.
  """
  rows_all = np.arange(len(table))
  if groups <= 1:
    return [(None, rows_all)]
  check_space(space, groups, 'search.width_groups')
  full = [l.num_choices for l in space.layers]
  sl = space.block_slice(block)
  keys = []
  for j, layer in enumerate(space.blocks[block].layers):
    bounds = _bounds(layer.num_choices, groups)
    keys.append(bounds[np.searchsorted(bounds, table[:, j], side='right')])
  keys = np.stack(keys, 1)
  out = []
  for key in sorted({tuple(int(v) for v in k) for k in keys}):
    limits = list(full)
    limits[sl] = key
    out.append((tuple(limits), rows_all[(keys == key).all(1)]))
  return out


def check_training(space, num_paths: int, groups: int, path_chunk: int):
  """One-line errors for a train.width_groups the sampler cannot honour."""
  check_space(space, groups, 'train.width_groups')
  if groups == 1:
    return
  if num_paths % groups:
    raise ValueError(f'train.width_groups={groups} must divide '
                     f'train.paths_per_step={num_paths}')
  for k, b in enumerate(space.blocks):
    n = b.layers[0].num_choices
    if n % groups:
      raise ValueError(f'train.width_groups={groups} must divide the {n} '
                       f'choices of block {k}\'s first layer')
  if 0 < path_chunk < num_paths:
    raise ValueError('train.width_groups > 1 runs the groups side by side: '
                     'set train.path_chunk=0')


def train_groups(space, block: int, num_paths: int, groups: int):
  """Static groups of the K sampled slots: [(limits, slice of slots)]."""
  if groups <= 1:
    return [(None, slice(None))]
  full = [l.num_choices for l in space.layers]
  first = space.block_slice(block).start
  per = num_paths // groups
  out = []
  for g, bound in enumerate(_bounds(full[first], groups)):
    limits = list(full)
    limits[first] = int(bound)
    out.append((tuple(limits), slice(g * per, (g + 1) * per)))
  return out


def stratify(key, space, block: int, paths, groups: int, fair: bool):
  """paths [K, L_k] with column 0 redrawn so slot j takes the block's first
  layer from bucket j // (K/G): uniformly within the bucket, or walking
  through a permutation of it (fair). Every path keeps a uniform marginal
  over the first layer's choices; with fair sampling and K = the number of
  choices, every choice is used once, as before."""
  num = paths.shape[0]
  n = space.blocks[block].layers[0].num_choices
  size, per = n // groups, num // groups
  cols = []
  for g in range(groups):
    kg = jax.random.fold_in(key, g)
    if fair:
      reps = -(-per // size)
      keys = jax.random.split(kg, reps)
      local = jnp.concatenate([jax.random.permutation(k, size)
                               for k in keys])[:per]
    else:
      local = jax.random.randint(kg, (per,), 0, size)
    cols.append(local + g * size)
  paths = jnp.asarray(paths)
  return paths.at[:, 0].set(jnp.concatenate(cols).astype(paths.dtype))


# -- the Siamese model and its variable trees --------------------------------

def narrow_model(model, space, limits):
  """The Siamese model with its backbone narrowed (None: unchanged)."""
  if limits is None:
    return model
  return model.clone(backbone=space.narrow(model.backbone, limits))


def narrow_tree(space, tree, limits):
  """A Siamese variable collection (params or batch_stats) narrowed."""
  if limits is None:
    return tree
  back = space.narrow_variables({'v': tree['backbone']}, limits)['v']
  return {**tree, 'backbone': back}


def widen_tree(space, full, narrow, limits):
  """`narrow` (from narrow_tree) written back into `full`."""
  if limits is None:
    return narrow
  back = space.widen_variables(full['backbone'], narrow['backbone'], limits)
  return {**narrow, 'backbone': back}
