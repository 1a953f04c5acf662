"""The supernet train step: a pure function of a hashable `TrainSpec`.

One step of block k, with the K paths [K, L] as data:
  1. two views on device (shared by all paths, or a pair per path);
  2. the objective's targets (e.g. the EMA target's ensemble), no gradient;
  3. the objective's loss of the online paths (in chunks of path_chunk),
     one backward pass for the summed per-path losses;
  4. the optimiser (LARS by default) updates only block k's parameters,
     then the objective updates its extra state (the EMA target).
Gradient accumulation scans over micro-batches inside the step.

`compiled_step(spec, mesh)` is cached on its (hashable) arguments, so two
trainers with equal settings share one compiled program.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from bossnax import parallel
from bossnax import width_groups as wg
from bossnax.data import augment
from bossnax.nn import grouping
from bossnax.nn.grouping import owner_block
from bossnax.nn.switchable import merge_path_stats
from bossnax.objectives.base import Objective
from bossnax.samplers import step_keys
from bossnax.spaces.base import SearchSpace

State = dict[str, Any]


# ---------------------------------------------------------------------------
# Parameter ownership and the optimiser

def _names(path) -> tuple[str, ...]:
  return tuple(k.key if isinstance(k, jax.tree_util.DictKey) else str(k)
               for k in path)


# Parameters without weight decay or LARS adaptation, by name: biases and
# norm parameters ('scale'/'bias' in every layer of bossnax, whatever their
# rank: per-width BN rows are 2-D), and the ViT's token and position
# embeddings (the official AutoFormer's no_weight_decay list).
NO_DECAY = ('bias', 'scale', 'cls_token', 'pos_embed', 'rel_k_rows',
            'rel_k_cols', 'rel_v_rows', 'rel_v_cols')


def decay_mask(params):
  """True where weight decay and LARS adaptation apply: every weight but
  those named in NO_DECAY (by name, not by ndim; tests check every norm is
  excluded)."""
  return jax.tree_util.tree_map_with_path(
      lambda p, _: _names(p)[-1] not in NO_DECAY, params)


def block_mask(params, block: int):
  """True for the parameters block `block` trains: those under a
  `block{block}` group (nn/grouping.py), in the backbone or the heads."""
  def owned(path, _):
    owner = owner_block(path)
    if owner is None:
      raise ValueError(f'parameter {"/".join(_names(path))} is in no '
                       'block{k} group: create it inside one '
                       '(bossnax/nn/grouping.py)')
    return owner == block
  return jax.tree_util.tree_map_with_path(owned, params)


def trust_ratio_per_row(per_row, trust_coefficient: float,
                        eps: float = 0.0) -> optax.GradientTransformation:
  """optax.scale_by_trust_ratio, with one ratio per leading row where
  `per_row` (a mask tree, or None) is True: a tensor that stacks one weight
  per choice then trains as separate tensors would (each row's update
  scaled by its own norm)."""
  inner = optax.scale_by_trust_ratio(trust_coefficient=trust_coefficient,
                                     eps=eps)

  def one(u, p):
    return inner.update({'w': u}, optax.EmptyState(), {'w': p})[0]['w']

  def update(updates, state, params=None):
    if params is None:
      raise ValueError('trust_ratio_per_row needs the parameters')
    if per_row is None:
      rows = jax.tree.map(lambda _: False, params)
    else:  # under optax.masked, leaves masked out are MaskedNode()s
      masked = lambda x: isinstance(x, optax.MaskedNode)
      rows = jax.tree.map(lambda p, r: p if masked(p) else r, params,
                          per_row, is_leaf=masked)
    return jax.tree.map(lambda u, p, r: jax.vmap(one)(u, p) if r else
                        one(u, p), updates, params, rows), state
  return optax.GradientTransformation(lambda _: optax.EmptyState(), update)


def keep_only(mask) -> optax.GradientTransformation:
  """Zero the updates outside `mask` (stateless, so the optimiser state has
  the same structure for every block)."""
  def update(updates, state, params=None):
    del params
    return jax.tree.map(lambda u, m: u * m, updates, mask), state
  return optax.GradientTransformation(lambda _: optax.EmptyState(), update)


LR_SCALINGS = ('linear', 'sqrt', 'none')
SCHEDULES = ('cosine', 'exponential')


def peak_lr(tcfg, effective_batch: int, warmup_steps: int,
            total_steps: int, block: int | None = None) -> float:
  """The schedule's peak learning rate.

  train.lr_sum > 0 sets the sum of the learning rates over a block's steps
  (under LARS the distance a weight travels follows it): the peak is
  lr_sum / (sum of the unit schedule). Otherwise train.lr at train.lr_batch,
  scaled to the effective batch by train.lr_scaling: 'linear' (x B / B0),
  'sqrt' (x sqrt(B / B0)) or 'none'; train.block_lr (one per block), when
  set, replaces train.lr for block `block`."""
  rule = tcfg.get('lr_scaling', 'linear')
  if rule not in LR_SCALINGS:
    raise ValueError(f'train.lr_scaling={rule!r}: use one of {LR_SCALINGS}')
  lr_sum = float(tcfg.get('lr_sum', 0.0))
  if lr_sum < 0:
    raise ValueError(f'train.lr_sum={lr_sum}: the sum of a block\'s learning '
                     'rates, > 0 (or 0 = set by train.lr and lr_scaling)')
  if lr_sum > 0:
    unit = optax.warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps,
                                              total_steps, 0.0)
    return lr_sum / float(np.sum(np.asarray(unit(np.arange(total_steps)))))
  ratio = effective_batch / tcfg.lr_batch
  lr = tcfg.lr
  per_block = tuple(tcfg.get('block_lr', ()))
  if per_block and block is not None:
    if block >= len(per_block):
      raise ValueError(f'train.block_lr={per_block} has no learning rate for '
                       f'block {block}: give one per block')
    lr = per_block[block]
  return lr * {'linear': ratio, 'sqrt': ratio ** 0.5, 'none': 1.0}[rule]


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
  """Optimiser of one block: linear warm-up then cosine decay of the
  learning rate from its peak (`peak_lr`), or ('exponential') the peak
  times `decay_rate` per epoch, stepwise (DNA's schedule)."""
  name: str = 'lars'  # 'lars' | 'sgd' | 'adamw' | 'adam'
  peak_lr: float = 0.48
  warmup_steps: int = 0
  total_steps: int = 1
  momentum: float = 0.9
  weight_decay: float = 1e-6
  eta: float = 0.001  # LARS trust coefficient
  # LARS: one trust ratio per row of a tensor that stacks a weight per
  # choice (the space's `per_choice_mask`), as separate tensors would have.
  lars_per_row: bool = True
  schedule_kind: str = 'cosine'  # 'cosine' | 'exponential'
  decay_rate: float = 0.9  # exponential: per epoch
  steps_per_epoch: int = 1
  adam_eps: float = 1e-8
  warmup_lr: float = 0.0  # cosine: the warm-up starts here
  min_lr: float = 0.0  # cosine: and decays to this

  @classmethod
  def from_config(cls, tcfg, steps_per_epoch: int, block: int | None = None):
    """The optimiser of `block` (None: any block; only train.block_lr
    depends on it)."""
    effective = tcfg.batch_size * tcfg.accum_steps
    total = max(1, tcfg.epochs_per_block * steps_per_epoch)
    warmup = min(int(tcfg.warmup_epochs * steps_per_epoch), total - 1)
    kind = tcfg.get('schedule', 'cosine')
    if kind not in SCHEDULES:
      raise ValueError(f'train.schedule={kind!r}: use one of '
                       f'{", ".join(SCHEDULES)}')
    return cls(name=tcfg.get('optimizer', 'lars'),
               peak_lr=peak_lr(tcfg, effective, warmup, total, block),
               warmup_steps=warmup, total_steps=total,
               momentum=tcfg.momentum, weight_decay=tcfg.weight_decay,
               eta=tcfg.eta,
               lars_per_row=bool(tcfg.get('lars_per_row', True)),
               schedule_kind=kind,
               decay_rate=float(tcfg.get('lr_decay_rate', 0.9)),
               steps_per_epoch=max(1, int(steps_per_epoch)),
               adam_eps=float(tcfg.get('adam_eps', 1e-8)),
               warmup_lr=float(tcfg.get('warmup_lr', 0.0)),
               min_lr=float(tcfg.get('min_lr', 0.0)))

  def lr_sum(self) -> float:
    """Sum of the learning rates over a block's steps."""
    return float(np.sum(np.asarray(self.schedule()(
        np.arange(self.total_steps)))))

  def schedule(self):
    if self.schedule_kind == 'exponential':
      decay = optax.exponential_decay(self.peak_lr, self.steps_per_epoch,
                                      self.decay_rate, staircase=True)
      if not self.warmup_steps:
        return decay
      return optax.join_schedules(
          [optax.linear_schedule(0.0, self.peak_lr, self.warmup_steps),
           decay], [self.warmup_steps])
    return optax.warmup_cosine_decay_schedule(
        self.warmup_lr, self.peak_lr, self.warmup_steps, self.total_steps,
        self.min_lr)

  def make(self, owned, per_row=None) -> optax.GradientTransformation:
    """The optimiser updating only `owned`; `per_row` marks the tensors
    with one trust ratio per leading row (LARS; the state does not depend
    on it)."""
    lr = self.schedule()
    if self.name == 'lars':
      # optax.lars with the trust ratio per row where per_row says so
      base = optax.chain(
          optax.add_decayed_weights(self.weight_decay, decay_mask),
          optax.masked(trust_ratio_per_row(
              per_row if self.lars_per_row else None, self.eta), decay_mask),
          optax.scale_by_learning_rate(lr),
          optax.trace(decay=self.momentum, nesterov=False))
    elif self.name == 'sgd':
      base = optax.chain(
          optax.add_decayed_weights(self.weight_decay, decay_mask),
          optax.sgd(lr, momentum=self.momentum))
    elif self.name == 'adamw':
      base = optax.adamw(lr, eps=self.adam_eps,
                         weight_decay=self.weight_decay, mask=decay_mask)
    elif self.name == 'adam':  # PyTorch's Adam: decay added to the gradient
      base = optax.chain(
          optax.add_decayed_weights(self.weight_decay, decay_mask),
          optax.scale_by_adam(eps=self.adam_eps),
          optax.scale_by_learning_rate(lr))
    else:
      raise ValueError(f'train.optimizer={self.name!r}: use lars, sgd, adamw '
                       'or adam')
    return optax.chain(base, keep_only(owned))


# ---------------------------------------------------------------------------
# The step

@dataclasses.dataclass(frozen=True)
class TrainSpec:
  """Everything static about the train step of one block (hashable)."""
  space: SearchSpace
  model: nn.Module
  objective: Objective
  optimizer: OptimizerSpec
  augment: ml_collections.FrozenConfigDict
  block: int
  path_chunk: int = 0  # online paths side by side per chunk; 0 = all
  width_groups: int = 1
  views_per_path: bool = False
  cache_prefix: bool = True
  dtype: str = 'float32'

  @classmethod
  def from_config(cls, config, space, model, objective, block,
                  steps_per_epoch):
    t = config.train
    if config.dtype not in ('float32', 'bfloat16'):
      raise ValueError(f"dtype {config.dtype!r}: use 'float32' or 'bfloat16'")
    wg.check_training(space, t.paths_per_step, t.width_groups, t.path_chunk)
    return cls(space=space, model=model, objective=objective,
               optimizer=OptimizerSpec.from_config(t, steps_per_epoch, block),
               augment=ml_collections.FrozenConfigDict(config.augment),
               block=block, path_chunk=t.path_chunk,
               width_groups=t.width_groups,
               views_per_path=bool(t.views_per_path),
               cache_prefix=bool(t.cache_prefix), dtype=config.dtype)


def forward_paths(spec: TrainSpec, params, stats, archs, views, per_path,
                  key=None):
  """Every view through every path: (outputs per view, each stacked over
  the K paths, and the merged batch statistics). `key`: the paths'
  'dropout' stream (stochastic depth of the ViT space; a key per path)."""
  model, space, block = spec.model, spec.space, spec.block
  keys = jax.random.split(jax.random.key(0) if key is None else key,
                          archs.shape[0])
  if spec.dtype == 'bfloat16':  # bf16 compute; f32 master params and stats
    params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), params)
    views = tuple(v.astype(jnp.bfloat16) for v in views)

  # The finished blocks' output is the same for every path (same views,
  # same prefix, frozen statistics): compute it once, not once per path.
  start = bool(block > 0 and not per_path and spec.cache_prefix)
  if start:
    variables = {'params': params, 'batch_stats': stats}
    views = tuple(model.apply(variables, v, archs[0], block=block,
                              method=type(model).prefix) for v in views)

  # Groups of slots by width (width_groups): each runs in its narrowed
  # supernet; gradients flow back through the slicing.
  outs, new = [], []
  for limits, sl in wg.train_groups(space, block, archs.shape[0],
                                    spec.width_groups):
    narrow = wg.narrow_model(model, space, limits)
    out, upd = _run_group(narrow, wg.narrow_tree(space, params, limits),
                          wg.narrow_tree(space, stats, limits), archs[sl],
                          tuple(v[sl] for v in views) if per_path else views,
                          block, start, per_path, space.path_batching,
                          keys[sl])
    if limits is not None:
      upd = jax.vmap(lambda n, limits=limits: wg.widen_tree(
          space, stats, n, limits))(upd)
    outs.append(out)
    new.append(upd)
  if len(outs) > 1:
    cat = lambda *x: jnp.concatenate(x)
    outs, new = [jax.tree.map(cat, *outs)], [jax.tree.map(cat, *new)]
  return outs[0], merge_path_stats(stats, new[0])


def _run_group(model, params, stats, archs, views, block, start, per_path,
               batching, keys):
  def one(arch, key, *xs):
    st, outs = stats, []
    for i, x in enumerate(xs):  # views one after another: each updates the
      out, upd = model.apply(   # statistics
          {'params': params, 'batch_stats': st}, x, arch, block=block,
          mode='train', start=start, mutable=['batch_stats'],
          rngs={'dropout': jax.random.fold_in(key, i)})
      st = upd.get('batch_stats', {})
      outs.append(out)
    return tuple(outs), st

  vaxis = 0 if per_path else None
  if batching == 'vmap':
    return jax.vmap(one, in_axes=(0, 0) + (vaxis,) * len(views))(
        archs, keys, *views)
  # one path after another (paths that switch branches)
  if per_path:
    return jax.lax.map(lambda a: one(*a), (archs, keys, *views))
  return jax.lax.map(lambda a: one(*a, *views), (archs, keys))


def train_step(spec: TrainSpec, state: State, images, key, archs,
               labels=None):
  """(new state, metrics) of one step on micro-batches `images` [A, B, ...]
  for the paths `archs` [K, L]; `labels` [A, B] for the objectives that
  read them (None for the self-supervised ones)."""
  objective, block = spec.objective, spec.block
  step = state['step']
  _, k_aug = step_keys(key, block, step)
  num = archs.shape[0]
  per_path = spec.views_per_path
  view_fn = augment.make_view_fn(spec.augment)
  params = state['params']
  # Streams of their own, so the views stay those of earlier runs: the
  # objective's mixing (mixup / cutmix) and stochastic depth.
  k_mix, k_drop = jax.random.split(jax.random.fold_in(k_aug, 2**31 - 1))
  forward = lambda key: functools.partial(forward_paths, spec,
                                          per_path=per_path, key=key)
  grad_fn = jax.value_and_grad(
      lambda p, st, tg, sl, a, vs, y, kd: objective.loss(
          forward(kd), p, st, tg, sl, a, vs, labels=y), has_aux=True)
  chunk = spec.path_chunk if 0 < spec.path_chunk < num else num
  if num % chunk:
    raise ValueError(f'train.path_chunk={chunk} must divide '
                     f'train.paths_per_step={num}')

  def views_of(k, imgs):
    if per_path:
      keys = jax.random.split(k, num)
      return jax.vmap(view_fn, in_axes=(0, None))(keys, imgs)
    return view_fn(k, imgs)

  def micro(carry, xs):
    grads, stats, extra = carry
    imgs, i, y = xs
    views = views_of(jax.random.fold_in(k_aug, i), imgs)
    if y is not None:  # labels become soft targets where the batch is mixed
      views, y = objective.mix(jax.random.fold_in(k_mix, i), views, y)
    kd = jax.random.fold_in(k_drop, i)
    targets, extra = objective.targets(forward(jax.random.fold_in(kd, num)),
                                       extra, archs, views, labels=y)
    slots = jnp.arange(num)

    # Online paths in chunks of `path_chunk`: a chunk runs side by side,
    # chunks one after another in a loop, so activation memory is one
    # chunk's.
    def one_chunk(carry, xs):
      grads, stats = carry
      a, sl, vs = xs if per_path else (*xs, views)
      (_, (loss, stats)), g = grad_fn(params, stats, targets, sl, a, vs, y,
                                      jax.random.fold_in(kd, sl[0]))
      return (jax.tree.map(jnp.add, grads, g), stats), loss

    if chunk == num:  # no loop: XLA:CPU runs convs inside loops slowly
      xs = (archs, slots, views) if per_path else (archs, slots)
      (grads, stats), loss = one_chunk((grads, stats), xs)
      return (grads, stats, extra), loss
    split = lambda x: x.reshape(num // chunk, chunk, *x.shape[1:])
    xs = (split(archs), split(slots))
    if per_path:
      xs = xs + (tuple(split(v) for v in views),)
    (grads, stats), losses = jax.lax.scan(one_chunk, (grads, stats), xs)
    return (grads, stats, extra), losses.mean()

  zeros = jax.tree.map(jnp.zeros_like, params)
  accum = images.shape[0]
  carry = (zeros, state['batch_stats'], state['extra'])
  if accum == 1:  # XLA:CPU runs convolutions inside a loop body slowly
    carry, loss = micro(carry, (images[0], 0, None if labels is None else
                                labels[0]))
    losses = loss[None]
  else:
    carry, losses = jax.lax.scan(micro, carry,
                                 (images, jnp.arange(accum), labels))
  grads, stats, extra = carry
  grads = jax.tree.map(lambda g: g / accum, grads)

  owned = objective.train_mask(block_mask(params, block))
  tx = spec.optimizer.make(owned, spec.space.per_choice_mask(params))
  updates, opt_state = tx.update(grads, state['opt_state'], params)
  params = optax.apply_updates(params, updates)
  total = spec.optimizer.total_steps
  new_state = {
      'params': params,
      'batch_stats': stats,
      'extra': objective.update_extra(extra, params, step, total, owned),
      'opt_state': opt_state,
      'step': step + 1,
  }
  metrics = {'loss': losses.mean(), 'lr': spec.optimizer.schedule()(step),
             **objective.step_metrics(step, total)}
  return new_state, metrics


@functools.lru_cache(maxsize=None)
def compiled_step(spec: TrainSpec, mesh):
  """The jitted step of `spec` on `mesh`: state and paths replicated,
  micro-batches (and their labels) split over the mesh, the state donated.
  Called step(state, images, key, archs, labels), labels None for the
  objectives that read none."""
  rep = parallel.replicated(mesh)
  data = parallel.batch_sharding(mesh, batch_axis=1)
  return jax.jit(functools.partial(train_step, spec),
                 in_shardings=(rep, data, rep, rep, data),
                 out_shardings=(rep, rep), donate_argnums=(0,))


# ---------------------------------------------------------------------------
# State

def init_state(model, objective, space, optimizer: OptimizerSpec,
               image_shape, key) -> State:
  """The state of a supernet run: online variables, the objective's extra
  state, the optimiser state (its structure is the same for every block)
  and the step within the block."""
  arch = jnp.asarray(space.flatten(space.default_arch()))
  x = jnp.zeros((2, *image_shape), jnp.float32)
  variables = grouping.init(model, key, x, arch, block=0, mode='train')
  params, stats = objective.init_variables(variables['params'],
                                           variables.get('batch_stats', {}))
  owned = block_mask(params, 0)
  return {
      'params': params,
      'batch_stats': stats,
      'extra': objective.init_extra(params, stats),
      'opt_state': optimizer.make(owned).init(params),
      'step': jnp.zeros((), jnp.int32),
  }


class Trainer:
  """The supernet of one run: its model (objective heads around the
  space's supernet), state builder and the compiled step of each block."""

  def __init__(self, config, space, objective, mesh, steps_per_epoch: int,
               image_shape=(32, 32, 3)):
    from bossnax.engine.state import StateBuilder
    self.config, self.space, self.objective = config, space, objective
    self.mesh, self.steps_per_epoch = mesh, steps_per_epoch
    self.image_shape = tuple(image_shape)
    t = config.train
    self.model = objective.model(
        space.supernet(config.model.embed_dim, remat=bool(t.remat)),
        space.num_blocks)
    self.optimizer = OptimizerSpec.from_config(t, steps_per_epoch)
    self.steps_per_block = self.optimizer.total_steps
    self.specs = [TrainSpec.from_config(config, space, self.model, objective,
                                        k, steps_per_epoch)
                  for k in range(space.num_blocks)]
    self._state = StateBuilder(functools.partial(
        init_state, self.model, objective, space, self.optimizer,
        self.image_shape), mesh, eager=True)

  @classmethod
  def from_config(cls, config, mesh, steps_per_epoch, image_shape=None,
                  space=None):
    """The trainer of `config`'s method and space (benchmarks, tests)."""
    from bossnax.methods import build_method
    from bossnax.spaces import make_space
    space = space or make_space(config.space)
    size = config.data.image_size
    return cls(config, space, build_method(config, space).objective, mesh,
               steps_per_epoch, image_shape or (size, size, 3))

  def state_shapes(self):
    """The state's abstract shapes with their shardings (shape-first)."""
    return self._state.shapes()

  def init_state(self, seed: int) -> State:
    return self._state.init(jax.random.key(seed))

  def start_block(self, state: State, block: int) -> State:
    """Fresh optimiser and step counter for a new block (learning-rate and
    EMA schedules restart); the extra state carries on as it is."""
    owned = block_mask(state['params'], block)
    state = dict(state)
    # Eager for the same reason as init_state (zeros, one kernel per shape).
    # The step counter too goes onto the mesh: a single-device counter is a
    # different input sharding from the step's output, and costs a second
    # compilation of every block's step.
    fresh = {'opt_state': self.optimizer.make(owned).init(state['params']),
             'step': jnp.zeros((), jnp.int32)}
    state.update(jax.device_put(fresh, parallel.replicated(self.mesh)))
    return state

  def step_fn(self, block: int):
    """step(state, images [A, B, ...], key, archs [K, L], labels [A, B] or
    None) of block `block`, jitted (shared by every trainer with the same
    settings)."""
    return compiled_step(self.specs[block], self.mesh)
