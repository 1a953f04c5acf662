"""Block-wise ensemble-bootstrapping trainer: state, optimiser, jitted step.

The state is one pytree (online and target parameters and batch statistics,
optimiser state, step within the block). Its structure does not depend on
the block being trained, so one checkpoint template serves the whole run:
the optimiser covers every parameter and a final stateless mask keeps all
but the current block's parameters still.

One train step, jitted per block (the block index is static, the path is
data):
  1. sample K paths of block k (uniform or fair) after the chosen prefix;
  2. augment two views on device (shared by all paths, or a pair per path);
  3. target network: projections of both views for every path;
     the ensemble target is the mean of their L2-normalised projections;
  4. online network: every path predicts the other view's ensemble;
     loss = symmetric 2 - 2cos, summed over paths;
  5. LARS update of block k's parameters, EMA of the target.
Optional gradient accumulation scans over micro-batches inside the step.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax

from bossnax import parallel, ssl
from bossnax import width_groups as wg
from bossnax.data import augment
from bossnax.nn.switchable import merge_path_stats

State = dict[str, Any]


# ---------------------------------------------------------------------------
# Optimiser

def _leaf_name(path) -> str:
  last = path[-1]
  return str(getattr(last, 'key', getattr(last, 'name', last)))


def decay_mask(params):
  """True where weight decay and LARS adaptation apply: every weight but
  biases and norm parameters. Norm parameters are named 'scale'/'bias' by
  every layer of bossnax, whatever their rank (per-width BN rows are 2-D), so
  the rule is by name, not by ndim; tests check every norm is excluded."""
  return jax.tree_util.tree_map_with_path(
      lambda p, _: _leaf_name(p) not in ('bias', 'scale'), params)


def block_mask(params, space, block: int):
  """True for the parameters that block `block` trains."""
  def owner(path):
    names = tuple(str(getattr(k, 'key', k)) for k in path)
    if names[0] == 'backbone':
      return space.param_block(names[1:])
    head = names[0]  # projector{b} / predictor{b}
    return int(head.replace('projector', '').replace('predictor', ''))
  return jax.tree_util.tree_map_with_path(
      lambda p, _: owner(p) == block, params)


def keep_only(mask) -> optax.GradientTransformation:
  """Zero the updates outside `mask` (stateless, so the optimiser state has
  the same structure for every block)."""
  def update(updates, state, params=None):
    del params
    return jax.tree.map(lambda u, m: u * m, updates, mask), state
  return optax.GradientTransformation(lambda _: optax.EmptyState(), update)


def learning_rate(tcfg, steps_per_epoch: int):
  """Linear warm-up then cosine decay; lr scaled linearly with the batch."""
  effective = tcfg.batch_size * tcfg.accum_steps
  peak = tcfg.lr * effective / tcfg.lr_batch
  total = max(1, tcfg.epochs_per_block * steps_per_epoch)
  warmup = min(int(tcfg.warmup_epochs * steps_per_epoch), total - 1)
  return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, total, 0.0)


def make_optimizer(tcfg, schedule, params, space, block):
  lars = optax.lars(schedule, weight_decay=tcfg.weight_decay,
                    weight_decay_mask=decay_mask, trust_coefficient=tcfg.eta,
                    trust_ratio_mask=decay_mask, momentum=tcfg.momentum)
  return optax.chain(lars, keep_only(block_mask(params, space, block)))


# ---------------------------------------------------------------------------
# Trainer

class Trainer:
  """Holds the model, the mesh and the compiled steps of one run."""

  def __init__(self, config, space, mesh, steps_per_epoch: int,
               image_shape=(32, 32, 3)):
    self.config = config
    self.space = space
    self.mesh = mesh
    self.steps_per_epoch = steps_per_epoch
    self.image_shape = tuple(image_shape)
    t = config.train
    self.steps_per_block = max(1, t.epochs_per_block * steps_per_epoch)
    self.model = ssl.Siamese(space.supernet(config.model.embed_dim,
                                            remat=bool(t.remat)),
                             space.num_blocks,
                             config.model.proj_hidden, config.model.proj_dim,
                             config.model.pred_hidden)
    self.schedule = learning_rate(t, steps_per_epoch)
    self.view_fn = augment.make_view_fn(config.augment)
    if config.dtype not in ('float32', 'bfloat16'):
      raise ValueError(f"dtype {config.dtype!r}: use 'float32' or 'bfloat16'")
    self.dtype = jnp.bfloat16 if config.dtype == 'bfloat16' else None
    wg.check_training(space, t.paths_per_step, t.width_groups, t.path_chunk)
    self._steps = {}

  # -- state ------------------------------------------------------------------
  def _example(self):
    return jnp.zeros((2, *self.image_shape), jnp.float32)

  def _init_state(self, rng) -> State:
    arch = jnp.asarray(self.space.flatten(self.space.default_arch()))
    variables = self.model.init(rng, self._example(), arch, block=0,
                                mode='train')
    params = variables['params']
    tx = make_optimizer(self.config.train, self.schedule, params, self.space,
                        0)
    return {
        'params': params,
        'target_params': params,
        'batch_stats': variables['batch_stats'],
        'target_batch_stats': variables['batch_stats'],
        'opt_state': tx.init(params),
        'step': jnp.zeros((), jnp.int32),
    }

  def state_shapes(self):
    """The state's abstract shapes with their shardings (shape-first)."""
    shapes = jax.eval_shape(self._init_state, jax.random.key(0))
    rep = parallel.replicated(self.mesh)
    return jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=rep), shapes)

  def init_state(self, seed: int) -> State:
    # Eager, not one jitted program: XLA:CPU generates a kernel per variable,
    # and compiling HyTra's ~2,000 variables (x4: target, optimiser) as one
    # program took minutes; eager ops compile once per distinct shape.
    state = self._init_state(jax.random.key(seed))
    # Online and target start equal but must not share buffers (the step
    # donates the state).
    state['target_params'] = jax.tree.map(jnp.copy, state['target_params'])
    state['target_batch_stats'] = jax.tree.map(jnp.copy,
                                               state['target_batch_stats'])
    return jax.device_put(state, parallel.replicated(self.mesh))

  def start_block(self, state: State, block: int) -> State:
    """Fresh optimiser and step counter for a new block (learning-rate and
    EMA schedules restart); the target network carries on as it is."""
    tx = make_optimizer(self.config.train, self.schedule, state['params'],
                        self.space, block)
    state = dict(state)
    # Eager for the same reason as init_state (zeros, one kernel per shape).
    state['opt_state'] = jax.device_put(tx.init(state['params']),
                                        parallel.replicated(self.mesh))
    state['step'] = jnp.zeros((), jnp.int32)
    return state

  # -- the step -----------------------------------------------------------------
  def _forward_paths(self, params, stats, archs, v1, v2, block, per_path):
    """Both views through every path: (z1, q1, z2, q2) each [K, B, D] and the
    merged batch statistics."""
    if self.dtype is not None:  # bf16 compute; f32 master params and stats
      params = jax.tree.map(lambda p: p.astype(self.dtype), params)
      v1, v2 = v1.astype(self.dtype), v2.astype(self.dtype)

    # The finished blocks' output is the same for every path (same views,
    # same prefix, frozen statistics): compute it once, not once per path.
    start = bool(block > 0 and not per_path and self.config.train.cache_prefix)
    if start:
      variables = {'params': params, 'batch_stats': stats}
      v1, v2 = (self.model.apply(variables, v, archs[0], block=block,
                                 method=ssl.Siamese.prefix) for v in (v1, v2))

    def paths(model, params, stats, archs, v1, v2):
      def one(arch, x1, x2):
        variables = {'params': params, 'batch_stats': stats}
        (z1, q1), upd = model.apply(variables, x1, arch, block=block,
                                    mode='train', start=start,
                                    mutable=['batch_stats'])
        variables = {'params': params, 'batch_stats': upd['batch_stats']}
        (z2, q2), upd = model.apply(variables, x2, arch, block=block,
                                    mode='train', start=start,
                                    mutable=['batch_stats'])
        return (z1, q1, z2, q2), upd['batch_stats']

      vaxis = 0 if per_path else None
      if self.space.path_batching == 'vmap':
        return jax.vmap(one, in_axes=(0, vaxis, vaxis))(archs, v1, v2)
      # one path after another (paths that switch branches)
      if per_path:
        return jax.lax.map(lambda a: one(*a), (archs, v1, v2))
      return jax.lax.map(lambda a: one(a, v1, v2), archs)

    # Groups of slots by width (train.width_groups): each runs in its
    # narrowed supernet; gradients flow back through the slicing.
    outs, new = [], []
    for limits, sl in self._groups(block, archs.shape[0]):
      model = wg.narrow_model(self.model, self.space, limits)
      out, upd = paths(model, wg.narrow_tree(self.space, params, limits),
                       wg.narrow_tree(self.space, stats, limits), archs[sl],
                       v1[sl] if per_path else v1, v2[sl] if per_path else v2)
      if limits is not None:
        upd = jax.vmap(lambda n, limits=limits: wg.widen_tree(
            self.space, stats, n, limits))(upd)
      outs.append(out)
      new.append(upd)
    if len(outs) > 1:
      cat = lambda *x: jnp.concatenate(x)
      outs, new = [jax.tree.map(cat, *outs)], [jax.tree.map(cat, *new)]
    outs, new = outs[0], new[0]
    return outs, merge_path_stats(stats, new)

  def _groups(self, block, num_paths):
    return wg.train_groups(self.space, block, num_paths,
                           self.config.train.width_groups)

  def _loss(self, params, stats, target, archs, v1, v2, block, per_path):
    (_, q1, _, q2), new_stats = self._forward_paths(
        params, stats, archs, v1, v2, block, per_path)
    t1, t2 = target
    loss = (ssl.regression_loss(q1, t2[None]) +
            ssl.regression_loss(q2, t1[None])).mean(1)  # [K]
    # Gradients add up over paths, as each path's backward does in the
    # official code; the logged loss is the mean over paths.
    return loss.sum(), (loss.mean(), new_stats)

  def _views(self, key, images, num_paths, per_path):
    if per_path:
      keys = jax.random.split(key, num_paths)
      return jax.vmap(self.view_fn, in_axes=(0, None))(keys, images)
    return self.view_fn(key, images)

  def _step(self, state, images, key, table, prefix, *, block):
    t = self.config.train
    step = state['step']
    key = jax.random.fold_in(jax.random.fold_in(key, block), step)
    k_path, k_aug = jax.random.split(key)
    paths = self.space.sample_block(k_path, block, table, t.paths_per_step,
                                    t.fair)
    if t.width_groups > 1:  # slots in width buckets of the first layer
      paths = wg.stratify(jax.random.fold_in(k_path, 1), self.space, block,
                          paths, t.width_groups, t.fair)
    sl = self.space.block_slice(block)
    archs = jnp.tile(prefix[None], (t.paths_per_step, 1))
    archs = archs.at[:, sl].set(paths)
    per_path = bool(t.views_per_path)
    params, tparams = state['params'], state['target_params']
    grad_fn = jax.value_and_grad(self._loss, has_aux=True)

    def micro(carry, xs):
      grads, stats, tstats = carry
      imgs, i = xs
      v1, v2 = self._views(jax.random.fold_in(k_aug, i), imgs,
                           t.paths_per_step, per_path)
      (z1, _, z2, _), tstats = self._forward_paths(
          tparams, tstats, archs, v1, v2, block, per_path)
      target = (jax.lax.stop_gradient(ssl.ensemble_target(z1)),
                jax.lax.stop_gradient(ssl.ensemble_target(z2)))
      # Online paths in chunks of `path_chunk`: a chunk runs side by side,
      # chunks one after another in a loop, so activation memory is one
      # chunk's.
      n = t.paths_per_step
      chunk = t.path_chunk if 0 < t.path_chunk < n else n
      if n % chunk:
        raise ValueError(f'train.path_chunk={chunk} must divide '
                         f'train.paths_per_step={n}')

      def one_chunk(carry, xs):
        grads, stats = carry
        a, pv1, pv2 = xs if per_path else (xs, v1, v2)
        (_, (loss, stats)), g = grad_fn(params, stats, target, a, pv1, pv2,
                                       block, per_path)
        return (jax.tree.map(jnp.add, grads, g), stats), loss

      if chunk == n:  # no loop: XLA:CPU runs convs inside loops slowly
        xs = (archs, v1, v2) if per_path else archs
        (grads, stats), loss = one_chunk((grads, stats), xs)
        return (grads, stats, tstats), loss
      split = lambda x: x.reshape(n // chunk, chunk, *x.shape[1:])
      xs = (split(archs), split(v1), split(v2)) if per_path else split(archs)
      (grads, stats), losses = jax.lax.scan(one_chunk, (grads, stats), xs)
      return (grads, stats, tstats), losses.mean()

    zeros = jax.tree.map(jnp.zeros_like, params)
    accum = images.shape[0]
    carry = (zeros, state['batch_stats'], state['target_batch_stats'])
    if accum == 1:  # XLA:CPU runs convolutions inside a loop body slowly
      carry, loss = micro(carry, (images[0], 0))
      losses = loss[None]
    else:
      carry, losses = jax.lax.scan(micro, carry, (images, jnp.arange(accum)))
    grads, stats, tstats = carry
    grads = jax.tree.map(lambda g: g / accum, grads)

    tx = make_optimizer(t, self.schedule, params, self.space, block)
    updates, opt_state = tx.update(grads, state['opt_state'], params)
    params = optax.apply_updates(params, updates)
    tau = ssl.ema_momentum(step, self.steps_per_block, t.ema_base)
    new_state = {
        'params': params,
        # Only the current block's target moves: finished blocks stay as
        # they were scored, so the final state re-scores them exactly.
        'target_params': jax.tree.map(
            lambda m, new, old: jnp.where(m, new, old),
            block_mask(tparams, self.space, block),
            ssl.ema_update(tparams, params, tau), tparams),
        'batch_stats': stats,
        'target_batch_stats': tstats,
        'opt_state': opt_state,
        'step': step + 1,
    }
    metrics = {'loss': losses.mean(), 'lr': self.schedule(step), 'tau': tau}
    return new_state, metrics

  def step_fn(self, block: int):
    """The jitted step of block `block` (compiled once per block)."""
    if block not in self._steps:
      rep = parallel.replicated(self.mesh)
      data = parallel.batch_sharding(self.mesh, batch_axis=1)
      self._steps[block] = jax.jit(
          functools.partial(self._step, block=block),
          in_shardings=(rep, data, rep, rep, rep),
          out_shardings=(rep, rep), donate_argnums=(0,))
    return self._steps[block]
