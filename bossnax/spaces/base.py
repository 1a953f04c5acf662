"""The search-space abstraction every space builds on.

A space is a sequence of blocks; a block is a sequence of layers; a layer has
candidate choices. An architecture is one int array per block (a choice index
per layer). Inside jitted code the architecture travels as one flat int32
vector (the blocks' arrays concatenated), so it is data, not structure: one
compiled program serves every path.

Spaces whose blocks are a plain Cartesian product of their layers' choices
(NATS, MBConv) get enumeration and fair sampling for free. Spaces with
constraints between layers (HyTra: resolution only goes down) override
`block_paths` to list the valid ones.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import math
from typing import Any, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Arch = tuple  # tuple of np.ndarray[int32], one per block


@dataclasses.dataclass(frozen=True)
class Layer:
  name: str
  choices: tuple  # readable labels of the candidates, e.g. (8, 16, ..., 64)

  @property
  def num_choices(self) -> int:
    return len(self.choices)


@dataclasses.dataclass(frozen=True)
class Block:
  name: str
  layers: tuple[Layer, ...]

  @property
  def num_layers(self) -> int:
    return len(self.layers)


class SearchSpace:
  """Base class: subclasses set `name` and `blocks`, and implement the model."""

  name: str = 'base'
  blocks: tuple[Block, ...] = ()
  # 'vmap' runs the sampled paths of a step side by side (all paths share
  # shapes); 'map' runs them one after another (paths may switch branches).
  path_batching: str = 'vmap'
  # False: the networks hold no batch statistics (LayerNorm only), so the
  # evaluator has nothing to recalibrate.
  batch_norm: bool = True

  def block_output_varies(self, k: int) -> bool:
    """Whether block k's output width depends on the path (then a
    distillation target needs a projection, objectives/distill.py)."""
    del k
    return False

  # ---- identity: equal settings, equal space (compiled steps are cached on
  # it) --------------------------------------------------------------------
  @property
  def space_kwargs(self):
    """The constructor's arguments (JSON-able): rebuilds this space."""
    names = inspect.signature(type(self).__init__).parameters
    return {n: (list(v) if isinstance(v, tuple) else v)
            for n in names if n != 'self' for v in [getattr(self, n)]}

  def _identity(self):
    freeze = lambda v: tuple(map(freeze, v)) if isinstance(
        v, (list, tuple)) else v
    return (type(self).__name__,
            tuple(sorted((k, freeze(v)) for k, v in self.space_kwargs.items())))

  def __eq__(self, other):
    return type(self) is type(other) and self._identity() == other._identity()

  def __hash__(self):
    return hash(self._identity())

  # ---- structure -----------------------------------------------------------
  @property
  def num_blocks(self) -> int:
    return len(self.blocks)

  @property
  def layers(self) -> tuple[Layer, ...]:
    return tuple(l for b in self.blocks for l in b.layers)

  @property
  def num_layers(self) -> int:
    return len(self.layers)

  def block_slice(self, k: int) -> slice:
    start = sum(b.num_layers for b in self.blocks[:k])
    return slice(start, start + self.blocks[k].num_layers)

  def flatten(self, arch: Arch) -> np.ndarray:
    """Architecture (one array per block) -> flat int32 vector."""
    if len(arch) != self.num_blocks:
      raise ValueError(f'{self.name}: an architecture has {self.num_blocks} '
                       f'blocks, got {len(arch)}')
    flat = np.concatenate([np.asarray(a, np.int32).reshape(-1) for a in arch])
    if flat.shape[0] != self.num_layers:
      raise ValueError(f'{self.name}: an architecture has {self.num_layers} '
                       f'layer choices, got {flat.shape[0]}')
    return flat

  def unflatten(self, flat: Sequence[int]) -> Arch:
    flat = np.asarray(flat, np.int32)
    return tuple(flat[self.block_slice(k)] for k in range(self.num_blocks))

  # ---- enumeration -----------------------------------------------------------
  def block_paths(self, k: int, prefix: Arch = ()) -> np.ndarray:
    """All valid paths of block k given the earlier blocks: int32 [P, L_k].

    Cartesian by default; `prefix` (paths of blocks < k) matters only for
    constrained spaces.
    """
    del prefix
    ranges = [range(l.num_choices) for l in self.blocks[k].layers]
    return np.array(list(itertools.product(*ranges)), np.int32).reshape(
        -1, self.blocks[k].num_layers)

  def is_cartesian(self, k: int) -> bool:
    return True

  def count(self) -> int:
    """Number of architectures in the whole space."""
    return math.prod(l.num_choices for l in self.layers)

  def enumerate(self) -> Iterator[Arch]:
    """Every architecture of the space, in a fixed order."""
    def rec(k, prefix):
      if k == self.num_blocks:
        yield prefix
        return
      for p in self.block_paths(k, prefix):
        yield from rec(k + 1, prefix + (p,))
    yield from rec(0, ())

  def is_valid(self, arch: Arch) -> bool:
    for k in range(self.num_blocks):
      table = self.block_paths(k, arch[:k])
      if not (table == np.asarray(arch[k])[None]).all(-1).any():
        return False
    return True

  # ---- whole architectures on the host (searchers) -----------------------
  def sample(self, rng: np.random.Generator) -> Arch:
    """A random valid architecture: block by block, each block's path
    uniform among its valid paths after the earlier blocks (uniform over
    the space when every block is Cartesian)."""
    arch: Arch = ()
    for k in range(self.num_blocks):
      table = self.block_paths(k, arch)
      arch = arch + (table[rng.integers(len(table))],)
    return arch

  def _repair(self, arch, rng) -> Arch:
    """`arch` with every block that is invalid after its (repaired) prefix
    redrawn uniformly among the valid paths."""
    out: Arch = ()
    for k in range(self.num_blocks):
      table = self.block_paths(k, out)
      path = np.asarray(arch[k], np.int32)
      if not (table == path[None]).all(-1).any():
        path = table[rng.integers(len(table))]
      out = out + (path,)
    return out

  def mutate(self, arch: Arch, rng: np.random.Generator,
             prob: float = 0.1, structure_prob=None) -> Arch:
    """Each layer's choice redrawn uniformly with probability `prob` (a
    block left invalid is redrawn among its valid paths). Spaces with
    structure genes (the ViT's depth) mutate those with `structure_prob`;
    here every gene is a layer's."""
    del structure_prob
    flat = self.flatten(arch).copy()
    for i, layer in enumerate(self.layers):
      if rng.random() < prob:
        flat[i] = rng.integers(layer.num_choices)
    return self._repair(self.unflatten(flat), rng)

  def can_cross(self, a: Arch, b: Arch) -> bool:
    """Whether `a` and `b` may be parents of one child (any two here)."""
    del a, b
    return True

  def crossover(self, a: Arch, b: Arch, rng: np.random.Generator) -> Arch:
    """Each layer's choice from parent `a` or `b` with probability 1/2
    (then repaired like `mutate`)."""
    fa, fb = self.flatten(a), self.flatten(b)
    take = rng.random(fa.shape[0]) < 0.5
    return self._repair(self.unflatten(np.where(take, fa, fb)), rng)

  def largest(self) -> Arch:
    """The last valid path of every block: the widest in channel spaces,
    whose choices are listed narrow to wide (spaces where the last choice
    is not the largest override this)."""
    return self.default_arch()

  def smallest(self) -> Arch:
    """The first valid path of every block (see `largest`)."""
    arch: Arch = ()
    for k in range(self.num_blocks):
      arch = arch + (self.block_paths(k, arch)[0],)
    return arch

  # ---- sampling (pure JAX, so it runs inside the jitted step) ----------------
  def sample_block(self, key: jax.Array, k: int, table: jax.Array, num: int,
                   fair: bool) -> jax.Array:
    """Sample `num` paths of block k: int32 [num, L_k].

    Uniform: rows of the table of valid paths. Fair (Cartesian blocks only):
    every layer walks through a random permutation of its choices, so with
    `num` == number of choices every choice of every layer is used exactly
    once per step (the official NATS setting).
    """
    if not fair:
      idx = jax.random.randint(key, (num,), 0, table.shape[0])
      return table[idx]
    if not self.is_cartesian(k):
      raise ValueError(f'{self.name}: fair sampling needs a Cartesian block; '
                       f'block {k} is constrained: set train.fair=False')
    cols = []
    for i, layer in enumerate(self.blocks[k].layers):
      reps = -(-num // layer.num_choices)
      keys = jax.random.split(jax.random.fold_in(key, i), reps)
      perm = jnp.concatenate(
          [jax.random.permutation(kk, layer.num_choices) for kk in keys])
      cols.append(perm[:num])
    return jnp.stack(cols, axis=1).astype(jnp.int32)

  # ---- readable form -----------------------------------------------------------
  def to_string(self, arch: Arch) -> str:
    raise NotImplementedError

  def from_string(self, text: str) -> Arch:
    raise NotImplementedError

  def named_architectures(self) -> dict[str, Arch]:
    return {}

  def parse(self, text: str) -> Arch:
    """A name from `named_architectures` or a readable architecture string."""
    named = self.named_architectures()
    if text in named:
      return named[text]
    return self.from_string(text)

  # ---- cost and models ----------------------------------------------------------
  def flops_params(self, arch: Arch, **kw) -> tuple[int, int]:
    """(multiply-adds of one image, parameter count) of the standalone net."""
    raise NotImplementedError

  def input_sizes(self, flat):
    """Per architecture of [N, L] flat vectors, the input side its images
    are scored at, or None: every architecture runs at the data's size
    (a space with an elastic resolution gene says otherwise)."""
    del flat
    return None

  def costs(self, flat: np.ndarray) -> np.ndarray:
    """(MAdds, params) of every architecture of [N, L] flat vectors, as
    int64 [N, 2] (spaces with an additive counter do it in one pass)."""
    return np.asarray([self.flops_params(self.unflatten(f)) for f in
                       np.asarray(flat)], np.int64).reshape(-1, 2)

  # The cost as a chain over blocks (what searchers/budgeted.py needs):
  # flops_params(arch) = end_cost(s_K) + sum_k block_costs(k, path_k, s_k)
  # where s_0 = None and block k leaves state s_{k+1} (MBConv: always None;
  # HyTra: the stage its last layer is at). Spaces whose cost is not such a
  # sum (NATS: a layer's cost depends on the next block's width) raise.
  def block_costs(self, k: int, paths: np.ndarray, state=None):
    """(int64 [N, 2] MAdds and params of block k's `paths` [N, Lk] entered
    in `state`, the state each leaves in: a list of N)."""
    raise NotImplementedError(
        f'the {self.name} space cost is not a sum of per-block costs')

  def end_cost(self, state=None) -> np.ndarray:
    """int64 [2]: what the architecture costs besides its blocks, given the
    state its last block leaves (stem, fixed layers, head)."""
    raise NotImplementedError(
        f'the {self.name} space cost is not a sum of per-block costs')

  def describe(self, arch: Arch, **kw) -> dict[str, Any]:
    flops, params = self.flops_params(arch, **kw)
    return {'space': self.name, 'arch': self.to_string(arch),
            'flops': flops, 'params': params,
            'flops_M': round(flops / 1e6, 3), 'params_M': round(params / 1e6, 4)}

  def draw(self, arch: Arch, path: str) -> None:
    """Write a PNG picture of `arch` (spaces with a layout worth drawing)."""
    raise NotImplementedError(f'the {self.name} space draws no picture')

  def supernet(self, embed_dim: int, remat: bool = False) -> Any:
    """The weight-sharing flax module. Its contract (docs/architecture.md):

    module(x, arch_flat, block=k, mode=..., output='embed') -> [B, D]

    embedding of block k's output (through its width adapter); earlier blocks
    run under stop_gradient; `mode` is a batch-norm mode of nn/switchable.py.
    Initialising it creates the variables of every block.
    remat=True: the module recomputes each layer's activations in the
    backward pass (per-layer rematerialisation).
    """
    raise NotImplementedError

  def standalone(self, arch: Arch):
    """(the plain network of one architecture, the arch vector it takes):
    the same module contract as the supernet, one choice per layer."""
    raise NotImplementedError(f'the {self.name} space has no standalone '
                              'network')

  def slice_variables(self, variables, arch: Arch):
    """Supernet variables ({'params', 'batch_stats'} of the backbone) ->
    the standalone network's for `arch` (weight extraction)."""
    raise NotImplementedError(f'the {self.name} space cannot extract a '
                              "path's weights")

  def per_choice_mask(self, params):
    """True for the parameters that stack one weight per choice along axis
    0 (the optimiser gives each row its own LARS trust ratio): none here."""
    import jax
    return jax.tree.map(lambda _: False, params)

  def default_arch(self) -> Arch:
    """A valid architecture used to initialise parameters: the last valid
    path of every block (the widest for channel spaces)."""
    arch: Arch = ()
    for k in range(self.num_blocks):
      arch = arch + (self.block_paths(k, arch)[-1],)
    return arch


def take_like(tree, like):
  """The part of variable tree `tree` with the keys of `like` (arrays or
  shape structs), checking shapes: a standalone network's variables are a
  subtree of its supernet's under the same names."""
  if hasattr(like, 'keys'):
    missing = [k for k in like if k not in tree]
    if missing:
      raise ValueError(f'weights: no variable {missing[0]!r} where one is '
                       'expected: they belong to another network')
    return {k: take_like(tree[k], like[k]) for k in like}
  if tuple(tree.shape) != tuple(like.shape):
    raise ValueError(f'weights: shape {tuple(tree.shape)} where '
                     f'{tuple(like.shape)} is expected')
  return tree


def leading_slices(tree, like):
  """`tree` cut to the keys and shapes of `like`: each array's leading
  slice (one line names what does not fit)."""
  if hasattr(like, 'keys'):
    missing = [k for k in like if k not in tree]
    if missing:
      raise ValueError(f'weights: no variable {missing[0]!r} where one is '
                       'expected: they belong to another network')
    return {k: leading_slices(tree[k], like[k]) for k in like}
  shape = tuple(like.shape)
  if len(shape) != tree.ndim or any(s > t for s, t in zip(shape, tree.shape)):
    raise ValueError(f'weights: {tuple(tree.shape)} cannot hold a slice of '
                     f'{shape}')
  return tree[tuple(slice(0, s) for s in shape)]
