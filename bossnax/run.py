"""One search run: execute a method's stage plan, then rank.

    for each stage of the method (BossNAS: block k = 0..K-1):
        train block k with the stage's sampler behind the searcher's prefixes
        (a `scored` sampler, GreedyNAS's, picks each round's paths by
        scoring candidates with the current weights; it may stop early)
        let the searcher score block k's paths (the evaluator) and extend
        its pool
    rank the architectures (the searcher's Ranking)

Everything needed to resume lives in the checkpoint: the state pytree and a
JSON meta (format, method, current block, step within it, the sampler's
and the searcher's state). A run started again on the same workdir continues
where it stopped (the data order and the paths are pure functions of seed,
block and step).
"""

from __future__ import annotations

import logging
import os
import time

import jax
import numpy as np

from bossnax import parallel
from bossnax.checkpoint import Checkpointer
from bossnax.data.fixed import padded_indices, process_share
from bossnax.data.pipeline import Batches
from bossnax.data.sources import make_source, validation_split
from bossnax.engine.errors import out_of_memory_names
from bossnax.engine.evaluator import Evaluator
from bossnax.engine.linear_probe import EVALUATORS, LinearProbe
from bossnax.engine.loop import train_steps
from bossnax.engine.supernet import Trainer
from bossnax.methods import build_method
from bossnax.metrics import MetricWriter
from bossnax.spaces import make_space

log = logging.getLogger('bossnax')

# The checkpoint format; a checkpoint of another format is refused.
FORMAT = 'bossnax.run/3'


class Run:
  """Builds everything from a config; `train_and_search()` does the work."""

  def __init__(self, config, workdir, write_metrics=True):
    self.config = config
    self.workdir = workdir
    self.space = make_space(config.space)
    self.method = build_method(config, self.space)
    self.searcher = self.method.searcher
    self.mesh = parallel.make_mesh(config.num_devices)
    self.source = make_source(config.data, seed=config.seed)
    t = config.train
    self.batches = Batches(self.source, 'train', t.batch_size * t.accum_steps,
                           seed=config.seed,
                           process_index=jax.process_index(),
                           process_count=jax.process_count(),
                           workers=config.data.workers,
                           repeats=t.get('repeated_aug', 1))
    self.trainer = Trainer(config, self.space, self.method.objective,
                           self.mesh, self.batches.steps_per_epoch,
                           self.source.image_shape)
    self.evaluator = Evaluator(config, self.space, self.trainer.model,
                               self.method.objective, self.mesh)
    # What scores a block: the method's objective, or a linear probe.
    self.scorer = self._scorer()
    if config.search.fitness not in ('loss', 'error'):
      raise ValueError(f'search.fitness={config.search.fitness!r}: use '
                       "'loss' or 'error' (top-1 error of the whole network)")
    self.ckpt = Checkpointer(os.path.join(workdir, 'checkpoints'),
                             max_to_keep=t.keep_checkpoints, format=FORMAT)
    self.writer = MetricWriter(workdir) if write_metrics else None

  def _scorer(self):
    which = self.config.search.get('evaluator', 'objective')
    if which not in EVALUATORS:
      raise ValueError(f'search.evaluator={which!r}: use one of '
                       f'{", ".join(EVALUATORS)}')
    if which == 'similarity_to_largest':
      if self.method.name != 'data':
        raise ValueError('search.evaluator=similarity_to_largest is the DATA '
                         'selection rule: use it with --config.method=data')
      return self.evaluator
    if which == 'objective':
      return self.evaluator
    batches = self.batches
    if batches.repeats > 1:  # the probe's classifier sees distinct images
      t = self.config.train
      batches = Batches(self.source, 'train', t.batch_size * t.accum_steps,
                        seed=self.config.seed,
                        process_index=jax.process_index(),
                        process_count=jax.process_count(),
                        workers=self.config.data.workers)
      self._probe_batches = batches  # closed with the run's
    return LinearProbe(self.config, self.space, self.mesh, batches,
                       self.source.image_shape)

  # -- inputs of the search ---------------------------------------------------
  def search_images(self, num_images=None):
    """(validation images, their weights, calibration images, validation
    labels): this process's share, the first `num_images` (default
    search.num_images; 0 = all) of the validation set padded to whole
    batches."""
    s = self.config.search
    num = s.num_images if num_images is None else num_images
    split = validation_split(self.source)
    n_val = self.source.num_examples(split)
    n = min(n_val, num) if num else n_val
    idx, weights = padded_indices(n, s.batch_size)
    val, labels = self.source.get(split, process_share(idx, s.batch_size))
    calib, _ = self.source.get('train', process_share(
        np.arange(s.calib_batch), s.calib_batch))
    return (val, process_share(weights, s.batch_size), calib,
            np.asarray(labels, np.int32))

  def restore(self):
    """(next save id, state, meta) of the newest checkpoint, or None."""
    restored = self.ckpt.restore_latest(self.trainer.state_shapes())
    if restored is None:
      return None
    save_id, state, meta = restored
    if meta.get('method', 'bossnas') != self.method.name:
      raise ValueError(f'{self.workdir} holds a {meta.get("method")} run, not '
                       f'{self.method.name}: pass --config.method='
                       f'{meta.get("method")} or use another --workdir')
    return save_id + 1, state, meta

  # -- the plan -----------------------------------------------------------------
  def train_and_search(self):
    t, s = self.config.train, self.config.search
    S = self.trainer.steps_per_block
    stages = self.method.stages
    restored = self.restore()
    if restored is None:
      state = self.trainer.start_block(
          self.trainer.init_state(self.config.seed), stages[0].block)
      meta = {'format': FORMAT, 'method': self.method.name,
              'space': self.space.name, 'block': 0, 'block_step': 0,
              **self.searcher.initial_state()}
      save_id = 0
    else:
      save_id, state, meta = restored
      log.info('resumed at block %d step %d', meta['block'],
               meta['block_step'])

    def checkpoint(state, meta, force=False):
      # Numbered in save order (meta says where in the run it is): the end
      # of a block's training and its scored state share a global step.
      nonlocal save_id
      self.ckpt.save(save_id, state, meta, force=force)
      save_id += 1
    key = jax.device_put(jax.random.key(self.config.seed),
                         parallel.replicated(self.mesh))
    val, val_w, calib, val_y = self.search_images()

    for i in range(meta['block'], len(stages)):
      stage = stages[i]
      k, sampler = stage.block, stage.sampler
      sampler.load_state_dict(meta.get('sampler', {}))
      prefixes = self.searcher.prefixes(meta)
      # one-shot stages sample whole architectures (spaces too large to
      # list have no table)
      table = None if stage.whole else self.space.block_paths(
          k, self.space.unflatten(prefixes[0])[:k])
      sl = slice(None) if stage.whole else self.space.block_slice(k)
      step_fn = self.trainer.step_fn(k)
      start = meta['block_step'] if meta['block'] == i else 0
      # GreedyNAS: the sampler scores its candidates with the weights of
      # the previous step, so the paths are picked in the step, not in
      # the prefetched loader.
      scored = getattr(sampler, 'scored', False)
      greedy_score = None
      if scored:
        greedy_score = self._candidate_scorer(k)
        sampler.schedule(S, self.batches.steps_per_epoch,
                         self.config.greedy.check_every_steps)

      def step(s_, state, batch, k=k, sampler=sampler, scored=scored,
               greedy_score=greedy_score, step_fn=step_fn):
        images, archs, labels = batch
        if not scored:
          return step_fn(state, images, key, archs, labels)
        archs = sampler.paths(s_, lambda flat: greedy_score(state, flat))
        state, metrics = step_fn(state, images, key, archs, labels)
        return state, {**metrics, **sampler.metrics(s_)}

      def load(step, prefixes=prefixes, k=k, sampler=sampler, sl=sl,
               table=table, scored=scored):
        got = self.batches.get_batch(step)
        micro = lambda x: parallel.global_batch(
            self.mesh, x.reshape(t.accum_steps, -1, *x.shape[1:]),
            batch_axis=1)
        # Prefix pool of size n: each step trains after one of its members.
        archs = None  # a scored sampler picks them inside the step
        if not scored:
          archs = np.tile(prefixes[step % len(prefixes)],
                          (t.paths_per_step, 1))
          archs[:, sl] = sampler.sample(k, step, table)
        # Labels reach the step only for objectives that read them: the
        # self-supervised ones cannot depend on them.
        labels = (micro(np.asarray(got['label'], np.int32))
                  if self.method.objective.uses_labels else None)
        return micro(got['image']), archs, labels

      def save(step, state, i=i):
        meta.update(block=i, block_step=step, sampler=sampler.state_dict())
        checkpoint(state, meta)

      state = train_steps(
          step, state, load, start, S, writer=self.writer,
          desc=('whole supernet' if stage.whole else
                f'block {k + 1}/{self.space.num_blocks}'),
          log_every=t.log_every_steps,
          checkpoint_every=t.checkpoint_every_steps, save=save,
          global_step=lambda step: k * S + step, tags={'block': k},
          count=lambda batch: batch[0].shape[0] * batch[0].shape[1],
          guard=lambda: out_of_memory_names(
              f'in the block-{k} train step',
              f'lower --config.train.batch_size={t.batch_size} (raise '
              'train.accum_steps to keep the batch) or set '
              '--config.train.path_chunk'),
          should_stop=getattr(sampler, 'after_step', None))
      if start < S:
        stopped = getattr(sampler, 'stopped', None)
        if stopped:
          meta['early_stop'] = {**stopped, 'of_steps': S}
          log.info('early stop after %d of %d steps (%.0f%%): %.1f%% of the '
                   'candidate pool replaced since the last check, below '
                   'alpha = %.1f%%', stopped['step'], S,
                   100 * stopped['step'] / S, 100 * stopped['change_rate'],
                   100 * stopped['alpha'])
          if self.writer is not None:
            self.writer.write(k * S + stopped['step'],
                              {'early_stop_step': stopped['step'],
                               'pool_change_rate': stopped['change_rate']},
                              block=k)
        # the block's training is kept whatever happens while scoring it
        meta.update(block=i, block_step=S, sampler=sampler.state_dict())
        checkpoint(state, meta, force=True)

      if stage.search_after:
        extra = {}  # the best path's validation accuracy, where scored

        def score(prefix, k=k):
          tic = time.time()
          with out_of_memory_names(
              f'while scoring block {k}',
              f'lower --config.search.batch_size={s.batch_size} or '
              f'--config.search.path_chunk={s.path_chunk} (block {k} is '
              'trained and checkpointed)'):
            out = self.scorer.score_block(state, k, prefix, val, calib,
                                          val_w, val_y)
          log.info('block %d: scored %d paths in %.1fs', k, len(out[0]),
                   time.time() - tic)
          self._report_accuracy(f'block {k}', out[1], extra)
          return out

        def score_archs(archs, k=k):
          tic = time.time()
          with out_of_memory_names(
              'while scoring the architectures',
              f'lower --config.search.batch_size={s.batch_size} or '
              f'--config.search.path_chunk={s.path_chunk} (the supernet is '
              'trained and checkpointed)'):
            out = self.scorer.score_archs(state, k, archs, val, calib,
                                          val_w, val_y)
          log.info('scored %d architectures in %.1fs', len(archs),
                   time.time() - tic)
          if s.fitness == 'error':  # top-1 error: lower is better, as a loss
            out = 1.0 - self._top1(self.scorer, 'search.fitness=error')
          self._report_accuracy('architectures', out, extra)
          return out
        found, tables = self.searcher.search_block(meta, k, score,
                                                   score_archs=score_archs)
        meta.update(found)
        if self.writer is not None:
          self.writer.write(
              (k + 1) * S, {'best_block_loss': float(min(tables[0][1])),
                            **extra},
              block=k, best_path=str(self.searcher.best(meta)[-1].tolist()))
      meta.update(block=i + 1, block_step=0)
      if i + 1 < len(stages):
        state = self.trainer.start_block(state, stages[i + 1].block)
      checkpoint(state, meta, force=True)
    self.ckpt.wait()
    return state, meta

  def _candidate_scorer(self, block):
    """(state, flat archs [m, L]) -> per-path loss (or top-1 error, with
    greedy.score='error') on greedy.val_images fixed validation images,
    BN recalibrated on greedy.calib_batch training images: GreedyNAS's
    rejection, one vectorised pass through the evaluator."""
    g, s = self.config.greedy, self.config.search
    val, val_w, calib, val_y = self.search_images(g.val_images)
    calib = calib[:g.calib_batch or None]
    if g.score not in ('loss', 'error'):
      raise ValueError(f"greedy.score={g.score!r}: use 'loss' (the paper's) "
                       "or 'error' (top-1, as mmrazor's reimplementation)")

    def score(state, flat):
      with out_of_memory_names(
          'while scoring the greedy candidates',
          f'lower --config.greedy.sample={g.sample}, '
          f'--config.greedy.val_images={g.val_images} or '
          f'--config.search.batch_size={s.batch_size}'):
        losses = self.evaluator.score_archs(state, block, flat, val, calib,
                                            val_w, val_y)
      return (losses if g.score == 'loss' else
              1.0 - self._top1(self.evaluator, 'greedy.score=error'))
    return score

  @staticmethod
  def _top1(scorer, what):
    acc = getattr(scorer, 'last_metrics', {}).get('correct')
    if acc is None:
      raise ValueError(f'{what} needs a classification objective (its score '
                       'counts correct predictions): use the loss')
    return np.asarray(acc, np.float64)

  def _report_accuracy(self, what, losses, extra):
    """Log (and keep for metrics.jsonl) the validation accuracy of the
    lowest-loss path, where the objective's score measures one."""
    acc = getattr(self.scorer, 'last_metrics', {}).get('correct')
    if acc is None:
      return
    best = int(np.argmin(losses))
    extra['best_path_val_accuracy'] = float(acc[best])
    log.info('%s: validation accuracy %.4f for the lowest loss (%.4f-%.4f '
             'over the %d paths)', what, acc[best], acc.min(), acc.max(),
             len(acc))

  def ranking(self, meta):
    """The searcher's Ranking of a finished run's meta."""
    return self.searcher.ranking(meta)

  def close(self):
    self.batches.close()
    if getattr(self, '_probe_batches', None) is not None:
      self._probe_batches.close()
    self.ckpt.close()
    if self.writer is not None:
      self.writer.close()


def write_results(config, space, meta, workdir):
  """scores.csv (every architecture, higher score = better), ranking.json;
  returns the ranking summary (also written)."""
  searcher = build_method(config, space).searcher
  return searcher.ranking(meta).write(workdir, config.search)
