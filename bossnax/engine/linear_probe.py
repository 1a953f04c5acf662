"""Supervised linear evaluation of a trained supernet (`search.evaluator=
linear`; the BossNAS paper's "Supv. linear eval.", Table 5).

For block k after a prefix, the supernet is frozen and one linear
classifier on block k's pooled, width-adapted output (the embedding the
self-supervised heads read) is trained with cross-entropy for
`search.linear_steps` steps, shared by every path: each step trains the
paths the run's sampler draws for that step, on the run's training batches
with their labels. Then every path of the block is scored by its validation
cross-entropy on clean images, through the same vectorised evaluator as the
population centre (BN recalibrated per path first).

It reuses the supervised method whole: the probe is objectives.supervised
with `frozen_backbone`, trained by the engine's step on a state whose
backbone is the run's online supernet.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bossnax import parallel
from bossnax.engine.evaluator import Evaluator
from bossnax.engine.supernet import Trainer
from bossnax.objectives.supervised import BlockSupervised
from bossnax.samplers import make_sampler

# 'similarity_to_largest' is DATA's own score (objectives/sandwich.py):
# valid with method=data only, where it is what 'objective' means.
EVALUATORS = ('objective', 'linear', 'similarity_to_largest')


def probe_config(config):
  """The run's config with the probe's optimisation: search.linear_steps
  steps of search.linear_optimizer at search.linear_lr (no scaling, no
  warm-up, no weight decay), cosine-decayed over one 'epoch' per block,
  whatever schedule the supernet trained with."""
  s = config.search
  if s.linear_steps < 1:
    raise ValueError(f'search.linear_steps={s.linear_steps}: the linear '
                     'classifier needs 1 or more steps')
  c = config.copy_and_resolve_references()
  t = c.train
  t.optimizer = s.linear_optimizer
  t.lr, t.lr_sum, t.lr_scaling = float(s.linear_lr), 0.0, 'none'
  t.warmup_epochs, t.epochs_per_block, t.weight_decay = 0.0, 1, 0.0
  t.schedule, t.block_lr = 'cosine', ()
  return c


class LinearProbe:
  """score_block(run_state, k, prefix, ...) of a trained supernet's online
  weights, as Evaluator.score_block gives the objective's score."""

  def __init__(self, config, space, mesh, batches, image_shape):
    self.config, self.space, self.mesh = config, space, mesh
    self.batches = batches
    self.objective = BlockSupervised(num_classes=space.num_classes,
                                     frozen_backbone=True)
    self.trainer = Trainer(probe_config(config), space, self.objective, mesh,
                           config.search.linear_steps, image_shape)
    self.evaluator = Evaluator(config, space, self.trainer.model,
                               self.objective, mesh)
    self.sampler = make_sampler(config, space)

  def init_state(self, run_state, block):
    """The probe's state for block `block`: fresh classifiers around the
    run's online supernet (weights and batch statistics)."""
    state = self.trainer.init_state(self.config.seed)
    # Copies: the probe's step donates its state, and the run's arrays must
    # survive it (the next block, the next prefix, the checkpoint).
    copy = lambda tree: jax.tree.map(jnp.copy, tree)
    params = {**state['params'],
              'backbone': copy(run_state['params']['backbone'])}
    stats = {**state['batch_stats'],
             'backbone': copy(run_state['batch_stats']['backbone'])}
    state = {**state, 'params': params, 'batch_stats': stats}
    return self.trainer.start_block(
        jax.device_put(state, parallel.replicated(self.mesh)), block)

  def train(self, run_state, block, prefix):
    """The probe's state after its steps on block `block` after `prefix`."""
    t = self.config.train
    state = self.init_state(run_state, block)
    step = self.trainer.step_fn(block)
    table = self.space.block_paths(
        block, self.space.unflatten(np.asarray(prefix, np.int32))[:block])
    sl = self.space.block_slice(block)
    key = jax.device_put(jax.random.fold_in(jax.random.key(self.config.seed),
                                            0x11ea),
                         parallel.replicated(self.mesh))
    micro = lambda x: parallel.global_batch(
        self.mesh, x.reshape(t.accum_steps, -1, *x.shape[1:]), batch_axis=1)
    for s in range(self.trainer.steps_per_block):
      got = self.batches.get_batch(s)
      archs = np.tile(np.asarray(prefix, np.int32), (t.paths_per_step, 1))
      archs[:, sl] = self.sampler.sample(block, s, table)
      state, _ = step(state, micro(got['image']), key, archs,
                      micro(np.asarray(got['label'], np.int32)))
    return state

  @property
  def last_metrics(self):
    return self.evaluator.last_metrics

  def score_archs(self, *args, **kw):
    del args, kw
    raise ValueError('search.evaluator=linear scores the blocks of a '
                     'block-wise method; a one-shot method is scored by '
                     'its own classifier (search.evaluator=objective)')

  def score_block(self, run_state, block, prefix, val_images, calib_images,
                  val_weights=None, val_labels=None):
    """(table [P, L_k], validation cross-entropy per path [P])."""
    if val_labels is None:
      raise ValueError('search.evaluator=linear needs the validation labels')
    state = self.train(run_state, block, prefix)
    return self.evaluator.score_block(state, block, prefix, val_images,
                                      calib_images, val_weights, val_labels)
