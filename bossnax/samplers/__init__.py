"""Path samplers, host side: which paths of a block a train step runs.

A sampler returns int32 paths [K, L_k] of block k for step s; the engine
puts them after the step's prefix and passes the whole [K, L] array to the
jitted step as data, so one compiled program serves every path. Uniform,
fair and width-stratified sampling are pure functions of (seed, block,
step) drawn with the same JAX random stream the step used when it sampled
inside jit, so a resumed run draws the same paths; `state_dict` is what a
stateful sampler (GreedyNAS's pool) will keep in the checkpoint.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from bossnax import width_groups as wg


def step_keys(key, block: int, step):
  """(paths key, views key) of step `step` of block `block` of a run whose
  key is `key` (the train step draws its views from the second)."""
  return jax.random.split(jax.random.fold_in(jax.random.fold_in(key, block),
                                             step))


class PathSampler:
  """Uniform (rows of the block's table of valid paths) or fair (every layer
  walks a random permutation of its choices: with K = choices, each choice
  of each layer once per step); `width_groups` G > 1 stratifies slot j's
  first layer into width bucket j // (K/G) (bossnax/width_groups.py)."""

  name = 'uniform'

  def __init__(self, space, num_paths: int, fair: bool, seed: int,
               width_groups: int = 1):
    wg.check_training(space, num_paths, width_groups, 0)
    self.space, self.num, self.fair, self.seed = space, num_paths, fair, seed
    self.groups = width_groups
    if fair:
      self.name = 'fair'
    self._cpu = jax.local_devices(backend='cpu')[0]

  @functools.cached_property
  def _draw(self):
    space, num, fair, groups = self.space, self.num, self.fair, self.groups

    def draw(seed, step, table, *, block):
      k_path, _ = step_keys(jax.random.key(seed), block, step)
      paths = space.sample_block(k_path, block, table, num, fair)
      if groups > 1:  # slots in width buckets of the first layer
        paths = wg.stratify(jax.random.fold_in(k_path, 1), space,
                                      block, paths, groups, fair)
      return paths
    return jax.jit(draw, static_argnames='block')

  def sample(self, block: int, step: int, table: np.ndarray) -> np.ndarray:
    """Paths [K, L_k] of block `block` at step `step` (table: its valid
    paths). Drawn on the host CPU whatever the accelerator."""
    with jax.default_device(self._cpu):
      return np.asarray(self._draw(np.uint32(self.seed), np.int32(step),
                                   np.asarray(table, np.int32), block=block))

  def state_dict(self):
    return {'name': self.name}

  def load_state_dict(self, state):
    if state and state.get('name') != self.name:
      raise ValueError(f'the checkpoint was trained with the '
                       f'{state.get("name")} sampler, not {self.name}: use '
                       'the run\'s own train.fair or another --workdir')


def make_sampler(config, space) -> PathSampler:
  t = config.train
  return PathSampler(space, t.paths_per_step, bool(t.fair), config.seed,
                     t.width_groups)


class WholeSampler:
  """Whole architectures from the space's `sample` (SPOS: each of the K
  paths walks the blocks, taking a uniform row of each block's table of
  valid paths after its own prefix; AutoFormer's ViT: a uniform depth,
  then each layer). A pure function of (seed, step) through numpy's
  generator, so a resumed run draws the same paths."""

  name = 'whole_uniform'

  def __init__(self, space, num_paths: int, seed: int):
    self.space, self.num, self.seed = space, num_paths, seed

  def sample(self, block: int, step: int, table=None) -> np.ndarray:
    """Whole architectures [K, L] (`block` and `table` unused)."""
    del block, table
    space = self.space
    rng = np.random.default_rng([self.seed, int(step), 0x5905])
    return np.stack([space.flatten(space.sample(rng))
                     for _ in range(self.num)]).astype(np.int32)

  def state_dict(self):
    return {'name': self.name}

  def load_state_dict(self, state):
    if state and state.get('name') != self.name:
      raise ValueError(f'the checkpoint was trained with the '
                       f'{state.get("name")} sampler, not {self.name}')


class SandwichSampler(WholeSampler):
  """The sandwich rule (slimmable networks; DATA's supernet): each step
  trains the largest architecture, the smallest, and K - 2 uniformly
  sampled ones (the space's `sample`), in that order: slot 0 is the
  largest, slot 1 the smallest. A pure function of (seed, step)."""

  name = 'sandwich'

  def __init__(self, space, num_paths: int, seed: int):
    if num_paths < 2:
      raise ValueError(f'train.paths_per_step={num_paths}: the sandwich rule '
                       'trains the largest, the smallest and K - 2 random '
                       'architectures per step: use 2 or more')
    super().__init__(space, num_paths, seed)
    self._ends = np.stack([space.flatten(space.largest()),
                           space.flatten(space.smallest())]).astype(np.int32)

  def sample(self, block: int, step: int, table=None) -> np.ndarray:
    del block, table
    rng = np.random.default_rng([self.seed, int(step), 0x5A4D])
    rest = [self.space.flatten(self.space.sample(rng))
            for _ in range(self.num - 2)]
    return np.concatenate([self._ends, np.reshape(
        np.asarray(rest, np.int32), (-1, self._ends.shape[1]))])
