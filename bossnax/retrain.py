"""Train one architecture from scratch with labels (a DeiT-like recipe).

  python -m bossnax.retrain --config=configs/retrain_hytra.py --workdir=DIR \
      [--config.arch=BossNet-T0] [--config.KEY=VALUE ...]
  python -m bossnax.retrain --config=configs/retrain_hytra.py:tiny --workdir=/tmp/rt

Recipe: AdamW (lr per 1024 images, scaled with the batch; no weight decay on
biases and norms), linear warm-up then cosine decay to min_lr, label
smoothing, mixup / cutmix on device, optional gradient clipping and weight
EMA. Data parallel: the batch is split over a 1-D mesh, the state replicated.

Writes into DIR: config.json, metrics.jsonl (and TensorBoard events),
checkpoints/ (Orbax; started again on the same DIR it resumes), and at the
end retrain_result.json (top-1/top-5 on the whole test split, cost, time).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import sys
import time

import jax
import jax.numpy as jnp
import flax.linen as nn
import ml_collections
import numpy as np
import optax
from flax import traverse_util

from bossnax.data.augment import mix_batch
from bossnax.nn import grouping

log = logging.getLogger('bossnax')


# ---------------------------------------------------------------------------
# Pure pieces (tests check them against hand computations).

def lr_schedule(tcfg, steps_per_epoch: int):
  """step -> lr: linear warm-up from 0 to lr * batch / 1024, then cosine
  decay to min_lr at the last step (the warm-up is capped one step short of
  the end, so the decay always has a step)."""
  peak = tcfg.lr * tcfg.batch_size / 1024
  total = max(1, int(tcfg.epochs * steps_per_epoch))
  warmup = min(int(tcfg.warmup_epochs * steps_per_epoch), total - 1)
  return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, total,
                                            end_value=tcfg.min_lr)


def topk_correct(logits, labels, ks=(1, 5)):
  """Per k, float [B]: 1 where the label is among the k highest logits."""
  _, top = jax.lax.top_k(logits, max(ks))
  hit = top == labels[:, None]
  return tuple(hit[:, :k].any(-1).astype(jnp.float32) for k in ks)


def prune_unused(fn, variables):
  """Drop the variables `fn(variables)` never reads (a module whose
  variables are all unread goes; a module keeps all its variables when any
  is read). A standalone network built from the supernet module creates
  heads that its logits never use; they would only cost optimiser memory."""
  flat, treedef = jax.tree_util.tree_flatten_with_path(variables)
  jaxpr = jax.make_jaxpr(lambda *leaves: fn(jax.tree.unflatten(
      treedef, leaves)))(*[v for _, v in flat]).jaxpr
  read = {id(v) for e in jaxpr.eqns for v in e.invars}
  read |= {id(v) for v in jaxpr.outvars}  # fn should return only outputs
  # A variable's module: its key path less the collection and the name.
  module = lambda path: jax.tree_util.keystr(path[1:-1])
  used = {module(p) for (p, _), var in zip(flat, jaxpr.invars)
          if id(var) in read}
  names = lambda path: tuple(jax.tree_util.keystr((k,), simple=True)
                             for k in path)
  return traverse_util.unflatten_dict(
      {names(p): v for p, v in flat if module(p) in used})


# ---------------------------------------------------------------------------
# The steps: pure functions of a hashable spec, compiled once per spec/mesh.

@dataclasses.dataclass(frozen=True)
class RetrainSpec:
  """Everything static about the train and eval steps of one network."""
  net: nn.Module
  arch: tuple  # the arch vector the network takes
  num_classes: int
  dtype: str
  train: ml_collections.FrozenConfigDict  # the recipe (config.train)
  augment: ml_collections.FrozenConfigDict
  steps_per_epoch: int

  def schedule(self):
    return lr_schedule(self.train, self.steps_per_epoch)

  @property
  def linear_probe(self) -> bool:
    return bool(self.train.get('linear_probe', False))

  def tx(self):
    """AdamW; decay only on weights (not biases, not norms). A linear
    probe updates the classifier only."""
    from bossnax.engine.supernet import decay_mask
    t = self.train
    adamw = optax.adamw(self.schedule(), weight_decay=t.weight_decay,
                        mask=decay_mask)
    tx = (optax.chain(optax.clip_by_global_norm(t.grad_clip), adamw)
          if t.grad_clip > 0 else adamw)
    if self.linear_probe:
      tx = optax.multi_transform(
          {'train': tx, 'frozen': optax.set_to_zero()}, classifier_labels)
    return tx


def classifier_labels(params):
  """'train' for the classifier's parameters, 'frozen' for the rest (the
  linear probe's optimiser partition)."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: 'train' if any(
          getattr(k, 'key', None) == 'classifier' for k in path)
      else 'frozen', params)


def _logits(spec, params, stats, x, mode, key=None):
  """`key`: the 'dropout' stream of networks with stochastic depth (the
  ViT space's drop path), in training."""
  if spec.dtype == 'bfloat16':  # bf16 compute; f32 master params and stats
    params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), params)
    x = x.astype(jnp.bfloat16)
  out = spec.net.apply({'params': params, 'batch_stats': stats}, x,
                       jnp.asarray(spec.arch, jnp.int32), mode=mode,
                       output='logits',
                       rngs=None if key is None else {'dropout': key},
                       mutable=['batch_stats'] if mode == 'train' else False)
  logits, upd = out if mode == 'train' else (out, {})
  return logits.astype(jnp.float32), upd.get('batch_stats', stats)


def train_step(spec, state, images, labels, key):
  from bossnax.data import augment
  t = spec.train
  step = state['step']
  # Stateless randomness: a pure function of (seed, step), so a resumed
  # run draws the same views and mixes.
  k_aug, k_mix = jax.random.split(jax.random.fold_in(key, step))
  x = augment.make_single_view_fn(spec.augment)(k_aug, images)
  targets = optax.smooth_labels(jax.nn.one_hot(labels, spec.num_classes),
                                t.label_smoothing)
  x, targets, _ = mix_batch(k_mix, x, targets, t.mixup_alpha,
                            t.cutmix_alpha, t.mix_switch_prob, t.mix_prob)

  def loss_fn(params):
    # A linear probe reads the frozen network as it is: BN statistics
    # stay (eval mode), only the classifier has gradients.
    if spec.linear_probe:
      labels_tree = classifier_labels(params)
      params = jax.tree.map(lambda p, l: p if l == 'train' else
                            jax.lax.stop_gradient(p), params, labels_tree)
    logits, stats = _logits(spec, params, state['batch_stats'], x,
                            'eval' if spec.linear_probe else 'train',
                            jax.random.fold_in(k_mix, 1))
    # _logits returns float32: the softmax is f32 under bf16 compute
    return optax.softmax_cross_entropy(logits, targets).mean(), stats

  (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state['params'])
  # Keep the statistics' dtypes (bf16 compute must not change the state).
  stats = jax.tree.map(lambda n, o: n.astype(o.dtype), stats,
                       state['batch_stats'])
  updates, opt_state = spec.tx().update(grads, state['opt_state'],
                                        state['params'])
  params = optax.apply_updates(state['params'], updates)
  new = {'params': params, 'batch_stats': stats, 'opt_state': opt_state,
         'step': step + 1}
  if t.ema_decay > 0:  # ema = decay * ema + (1 - decay) * new
    for name, value in (('params', params), ('batch_stats', stats)):
      new['ema_' + name] = optax.incremental_update(
          value, state['ema_' + name], step_size=1 - t.ema_decay)
  metrics = {'loss': loss, 'lr': spec.schedule()(step),
             'grad_norm': optax.tree.norm(grads)}
  return new, metrics


def eval_step(spec, params, stats, images, labels, weights):
  from bossnax.data import augment
  x = augment.eval_view(images, spec.augment.mean, spec.augment.std)
  logits, _ = _logits(spec, params, stats, x, 'eval')
  k5 = min(5, logits.shape[-1])
  top1, top5 = topk_correct(logits, labels, (1, k5))
  loss = optax.softmax_cross_entropy(
      logits, jax.nn.one_hot(labels, logits.shape[-1]))
  return {'top1': (top1 * weights).sum(), 'top5': (top5 * weights).sum(),
          'loss': (loss * weights).sum(), 'count': weights.sum()}


@functools.lru_cache(maxsize=None)
def compiled_steps(spec: RetrainSpec, mesh):
  """(train step, eval step) of `spec` on `mesh`: the state replicated and
  donated, batches split over the mesh."""
  from bossnax import parallel
  rep = parallel.replicated(mesh)
  data = parallel.batch_sharding(mesh)
  return (jax.jit(functools.partial(train_step, spec),
                  in_shardings=(rep, data, data, rep),
                  out_shardings=(rep, rep), donate_argnums=(0,)),
          jax.jit(functools.partial(eval_step, spec),
                  in_shardings=(rep, rep, data, data, data),
                  out_shardings=rep))


# ---------------------------------------------------------------------------
# The run.

class Retrain:
  """Model, data, optimiser and compiled steps of one run; `fit(workdir)`
  trains (resuming from DIR/checkpoints) and evaluates."""

  def __init__(self, config):
    from bossnax import parallel
    from bossnax.data.pipeline import Batches
    from bossnax.data.sources import make_source
    from bossnax.spaces import make_space
    self.config = c = config
    t = c.train
    if c.dtype not in ('float32', 'bfloat16'):
      raise ValueError(f"dtype {c.dtype!r}: use 'float32' or 'bfloat16'")
    if c.spec:  # a spec written by `python -m bossnax.export`
      from bossnax import export
      self.space, self.arch, _ = export.load_spec(c.spec)
    else:
      self.space = make_space(c.space)
      self.arch = self.space.parse(c.arch)
    if not hasattr(self.space, 'standalone'):
      raise ValueError(f'the {self.space.name} space has no standalone '
                       'network yet: pass --config.space.name=nats '
                       '--config.arch=C0:C1:C2:C3:C4')
    self.net, arch_vec = self.space.standalone(self.arch)
    self.arch_vec = jnp.asarray(arch_vec, jnp.int32)
    self.mesh = parallel.make_mesh(c.num_devices)
    ndev = self.mesh.devices.size
    for name, b in (('train.batch_size', t.batch_size),
                    ('eval.batch_size', c.eval.batch_size)):
      if b % ndev:
        raise ValueError(f'{name}={b} does not split over {ndev} devices: '
                         'use a multiple of the device count')
    self.source = make_source(c.data, seed=c.seed)
    if self.source.num_classes > self.space.num_classes:
      raise ValueError(f'{self.source.name} has {self.source.num_classes} '
                       f'classes but space.num_classes='
                       f'{self.space.num_classes}: pass '
                       f'--config.space.num_classes={self.source.num_classes}')
    self.batches = Batches(self.source, 'train', t.batch_size, seed=c.seed,
                           process_index=jax.process_index(),
                           process_count=jax.process_count(),
                           workers=c.data.workers,
                           repeats=t.get('repeated_aug', 1))
    self.steps_per_epoch = self.batches.steps_per_epoch
    self.total_steps = max(1, int(t.epochs * self.steps_per_epoch))
    self.spec = RetrainSpec(
        self.net, tuple(int(v) for v in np.asarray(arch_vec)),
        self.space.num_classes, c.dtype,
        ml_collections.FrozenConfigDict(t),
        ml_collections.FrozenConfigDict(c.augment), self.steps_per_epoch)
    self.schedule, self.tx = self.spec.schedule(), self.spec.tx()
    self.step_fn, self.eval_fn = compiled_steps(self.spec, self.mesh)
    from bossnax.engine.state import StateBuilder
    self._state = StateBuilder(self._init_state, self.mesh)

  # -- state ----------------------------------------------------------------
  def _init_state(self, rng):
    x = jnp.zeros((2, *self.source.image_shape), jnp.float32)
    variables = grouping.init(self.net, rng, x, self.arch_vec, mode='train',
                              output='logits')
    variables = prune_unused(lambda v: self.net.apply(
        v, x, self.arch_vec, mode='train', output='logits',
        rngs={'dropout': jax.random.key(0)},  # drop path, where there is
        mutable=['batch_stats'])[0], variables)
    params, stats = variables['params'], variables.get('batch_stats', {})
    state = {'params': params, 'batch_stats': stats,
             'opt_state': self.tx.init(params),
             'step': jnp.zeros((), jnp.int32)}
    if self.config.train.ema_decay > 0:
      state['ema_params'], state['ema_batch_stats'] = params, stats
    return state

  @staticmethod
  def _init_key(seed):
    # 'rbg' (XLA's RngBitGenerator) only for initialisation: XLA:CPU compiles
    # threefry initialisers ~4x slower (26 s vs 6 s for the tiny NATS net on
    # 2 cores). The init is replicated, so the values do not depend on the
    # mesh. Training randomness stays threefry (the same under any sharding).
    return jax.random.key(seed, impl='rbg')

  def state_shapes(self):
    """Abstract state with shardings: the checkpoint template (shape-first,
    nothing is computed)."""
    return self._state.shapes(self._init_key(0))

  def init_state(self, seed):
    state = self._state.init(self._init_key(seed))
    if self.config.init_weights:
      # Start from exported supernet weights instead of random ones (the
      # paper retrains from scratch; this is for fine-tuning studies).
      from bossnax import export
      from bossnax.spaces.base import take_like
      loaded = export.load_weights(self.config.init_weights, self.net,
                                   self.arch_vec, self.source.image_shape[0])
      from bossnax import parallel
      rep = parallel.replicated(self.mesh)
      for name in ('params', 'batch_stats'):
        if name not in loaded and not jax.tree.leaves(state[name]):
          continue  # a network without batch statistics (the ViT)
        # the pruned state keeps a subtree of the exported variables
        new = take_like(loaded.get(name, {}), state[name])
        state[name] = jax.device_put(new, rep)
        if 'ema_' + name in state:
          state['ema_' + name] = jax.device_put(
              jax.tree.map(jnp.copy, new), rep)
    return state

  # -- evaluation ----------------------------------------------------------------
  def _eval_batch(self, i, idx, weights):
    """Batch i of the padded test split (every image counts once, the
    padding weighs 0); each process loads its share."""
    from bossnax import parallel
    from bossnax.data.fixed import process_share
    b = self.config.eval.batch_size
    mine = process_share(idx[i * b:(i + 1) * b], b)
    w = process_share(weights[i * b:(i + 1) * b], b)
    x, y = self.source.get('test', mine)
    return tuple(parallel.global_batch(self.mesh, a) for a in (x, y, w))

  def evaluate(self, state, ema=False):
    from bossnax.data.fixed import padded_indices
    from bossnax.data.pipeline import prefetch
    n_all = self.source.num_examples('test')
    n = min(n_all, self.config.eval.num_images or n_all)
    idx, weights = padded_indices(n, self.config.eval.batch_size)
    params = state['ema_params' if ema else 'params']
    stats = state['ema_batch_stats' if ema else 'batch_stats']
    total = None
    batches = range(len(idx) // self.config.eval.batch_size)
    for _, (x, y, w) in prefetch(
        lambda i: self._eval_batch(i, idx, weights), batches):
      out = self.eval_fn(params, stats, x, y, w)
      total = out if total is None else jax.tree.map(jnp.add, total, out)
    total = jax.device_get(total)
    count = float(total['count'])
    return {'top1': float(total['top1']) / count,
            'top5': float(total['top5']) / count,
            'loss': float(total['loss']) / count, 'images': int(count)}

  def _evaluate_all(self, state):
    out = {f'eval_{k}': v for k, v in self.evaluate(state).items()}
    if self.config.train.ema_decay > 0:
      out.update({f'ema_eval_{k}': v
                  for k, v in self.evaluate(state, ema=True).items()
                  if k != 'images'})
    return out

  # -- the loop ----------------------------------------------------------------------
  def fit(self, workdir, stop_at=None):
    """Train to the last step (resuming from workdir's checkpoints), evaluate,
    write retrain_result.json. `stop_at`: stop before that step as if killed
    (tests); returns the state and the result (None when stopped)."""
    from bossnax import parallel
    from bossnax.checkpoint import Checkpointer
    from bossnax.engine.loop import train_steps
    from bossnax.metrics import MetricWriter
    c, t = self.config, self.config.train
    tic = time.time()
    S, spe = self.total_steps, self.steps_per_epoch
    arch = self.space.to_string(self.arch)
    ckpt = Checkpointer(os.path.join(workdir, 'checkpoints'),
                        max_to_keep=t.keep_checkpoints)
    writer = MetricWriter(workdir)
    try:
      restored = ckpt.restore_latest(self.state_shapes())
      if restored is None:
        state, start = self.init_state(c.seed), 0
      else:
        _, state, meta = restored
        if meta.get('arch') != arch:
          raise ValueError(f'{workdir} holds a run of {meta.get("arch")}, not '
                           f'{arch}: use another --workdir')
        start = meta['step']
        log.info('resumed at step %d of %d', start, S)
      key = jax.device_put(jax.random.key(c.seed),
                           parallel.replicated(self.mesh))

      def load(s):
        b = self.batches.get_batch(s)
        return (parallel.global_batch(self.mesh, b['image']),
                parallel.global_batch(self.mesh, b['label']))

      def evaluate(step, state):
        epoch_end = step % spe == 0 and step < S
        if epoch_end and (step // spe) % t.eval_every_epochs == 0:
          writer.write(step, self._evaluate_all(state), epoch=step // spe)

      state = train_steps(
          lambda s, state, batch: self.step_fn(state, *batch, key), state,
          load, start, S, writer=writer, desc='retrain', until=stop_at,
          log_every=t.log_every_steps,
          checkpoint_every=t.checkpoint_every_steps,
          save=lambda s, state: ckpt.save(s, state, {'step': s,
                                                     'arch': arch}),
          after_step=evaluate)
      if stop_at is not None and stop_at < S:  # stopped as if killed
        return state, None
      if start < S:
        ckpt.save(S, state, {'step': S, 'arch': arch}, force=True)
      final = self._evaluate_all(state)
      writer.write(S, final, epoch=S / spe)
      ckpt.wait()
    finally:
      self.batches.close()
      ckpt.close()
      writer.close()
    flops, params = self.space.flops_params(self.arch,
                                            resolution=c.data.image_size)
    result = {'space': self.space.name, 'arch': arch,
              'top1': final['eval_top1'], 'top5': final['eval_top5'],
              'test_loss': final['eval_loss'],
              'test_images': final['eval_images']}
    if t.ema_decay > 0:
      result.update(ema_top1=final['ema_eval_top1'],
                    ema_top5=final['ema_eval_top5'])
    result.update(flops=flops, params=params, resolution=c.data.image_size,
                  steps=S, epochs=t.epochs, batch_size=t.batch_size,
                  resumed_from_step=start,
                  wall_time_s=round(time.time() - tic, 2))
    if parallel.is_main_process():
      with open(os.path.join(workdir, 'retrain_result.json'), 'w') as f:
        json.dump(result, f, indent=1)
    return state, result


def _retrain(config, flags):
  from bossnax import parallel
  workdir = flags['workdir']
  run = Retrain(config)
  os.makedirs(workdir, exist_ok=True)
  if parallel.is_main_process():
    from bossnax.config import record_run_config
    record_run_config(workdir, config)
  _, result = run.fit(workdir)
  if parallel.is_main_process():
    ema = (f"; EMA top-1 {result['ema_top1']:.4f} top-5 "
           f"{result['ema_top5']:.4f}" if 'ema_top1' in result else '')
    print(f"{result['arch']}: top-1 {result['top1']:.4f} top-5 "
          f"{result['top5']:.4f} on {result['test_images']} test images{ema}"
          f"\nresults in {os.path.join(workdir, 'retrain_result.json')}")
  return 0


def main(argv=None):
  from bossnax.cli import run_main
  return run_main(_retrain, argv, {'workdir': None})


if __name__ == '__main__':
  sys.exit(main())
