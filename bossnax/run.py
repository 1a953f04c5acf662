"""One BossNAS run: for each block, train it, then score its paths; then rank.

    for block k = 0..K-1:
        train block k (ensemble bootstrapping) after the chosen prefix
        score every path of block k (population centre), keep the best n
    rank the architectures by the sum of block scores

Everything needed to resume lives in the checkpoint: the state pytree and a
JSON meta with the current block, the step within it, the prefix pool and the
block score tables. A run started again on the same workdir continues where
it stopped (the data order is a pure function of seed, block and step).
"""

from __future__ import annotations

import contextlib
import json
import logging

log = logging.getLogger('bossnax')
import os
import time

import jax
import numpy as np

from bossnax import parallel, search
from bossnax.checkpoint import Checkpointer
from bossnax.data.pipeline import Batches, prefetch
from bossnax.data.sources import make_source
from bossnax.metrics import MetricWriter, Progress
from bossnax.spaces import make_space
from bossnax.train import Trainer


def _lambdas(config, num_blocks):
  lam = tuple(config.search.lambdas) or (1.0,) * num_blocks
  if len(lam) != num_blocks:
    raise ValueError(f'search.lambdas has {len(lam)} values for {num_blocks} '
                     f'blocks: pass --config.search.lambdas="{(1.0,) * num_blocks}"')
  return lam


def _pool_from_meta(space, meta):
  return [(tuple(np.asarray(p, np.int32) for p in paths), acc)
          for paths, acc in meta['pool']]


def _prefix_vector(space, paths):
  flat = np.zeros(space.num_layers, np.int32)
  for k, p in enumerate(paths):
    flat[space.block_slice(k)] = p
  return flat


@contextlib.contextmanager
def _out_of_memory_names(where, fix):
  """Rewords an accelerator (or host) out-of-memory error as one line naming
  the knobs that fix it; any other error passes unchanged."""
  try:
    yield
  except Exception as e:  # noqa: BLE001 (re-raised)
    text = str(e)
    if 'RESOURCE_EXHAUSTED' not in text and 'Out of memory' not in text:
      raise
    raise MemoryError(f'out of memory {where}: {fix}; run the same command '
                      'again to resume from the last checkpoint') from e


class Run:
  """Builds everything from a config; `train_and_search()` does the work."""

  def __init__(self, config, workdir, write_metrics=True):
    self.config = config
    self.workdir = workdir
    parallel.maybe_initialize_distributed(config.distributed)
    parallel.enable_compilation_cache(config.compilation_cache_dir)
    self.space = make_space(config.space)
    self.mesh = parallel.make_mesh(config.num_devices)
    self.source = make_source(config.data)
    t = config.train
    self.batches = Batches(self.source, 'train', t.batch_size * t.accum_steps,
                           seed=config.seed,
                           process_index=jax.process_index(),
                           process_count=jax.process_count())
    self.trainer = Trainer(config, self.space, self.mesh,
                           self.batches.steps_per_epoch,
                           self.source.image_shape)
    self.scorer = search.Scorer(config, self.space, self.trainer.model,
                                self.mesh)
    self.lambdas = _lambdas(config, self.space.num_blocks)
    self.ckpt = Checkpointer(os.path.join(workdir, 'checkpoints'),
                             max_to_keep=t.keep_checkpoints)
    self.writer = MetricWriter(workdir) if write_metrics else None

  # -- inputs of the search -------------------------------------------------------
  def _search_images(self):
    s = self.config.search
    n_val = self.source.num_examples('test')
    n = min(n_val, s.num_images) if s.num_images else n_val
    val, _ = self.source.get('test', np.arange(n))
    calib, _ = self.source.get('train', np.arange(s.calib_batch))
    # Every image counts: pad the last batch, with weight 0.
    pad = (-n) % s.batch_size
    weights = np.concatenate([np.ones(n, np.float32),
                              np.zeros(pad, np.float32)])
    val = np.concatenate([val, np.repeat(val[-1:], pad, 0)])
    # Each process keeps its share of the fixed batches (multi-host).
    pc, pi = jax.process_count(), jax.process_index()
    per = s.batch_size // pc

    def mine(a):
      return a.reshape(-1, pc, per, *a.shape[1:])[:, pi].reshape(
          -1, *a.shape[1:])
    cper = s.calib_batch // pc
    calib = calib[pi * cper:(pi + 1) * cper]
    return mine(val), mine(weights), calib

  # -- the loop -----------------------------------------------------------------------
  def train_and_search(self):
    t = self.config.train
    S = self.trainer.steps_per_block
    K = self.space.num_blocks
    restored = self.ckpt.restore_latest(self.trainer.state_shapes())
    if restored is None:
      state = self.trainer.init_state(self.config.seed)
      meta = {'block': 0, 'block_step': 0, 'pool': [[[], 0.0]],
              'tables': {}, 'space': self.space.name}
      state = self.trainer.start_block(state, 0)
      save_id = 0
    else:
      save_id, state, meta = restored
      save_id += 1
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
    val, val_w, calib = self._search_images()

    for k in range(meta['block'], K):
      pool = _pool_from_meta(self.space, meta)
      prefixes = np.stack([_prefix_vector(self.space, p) for p, _ in pool])
      table = self.space.block_paths(k, pool[0][0])
      step_fn = self.trainer.step_fn(k)
      start = meta['block_step'] if meta['block'] == k else 0
      progress = Progress(S, f'block {k + 1}/{K}', start_step=start)
      shape = (t.accum_steps, -1)

      def load(s):
        local = self.batches.get_batch(s)['image']
        local = local.reshape(*shape, *local.shape[1:])
        return parallel.global_batch(self.mesh, local, batch_axis=1)

      tick, seen = time.time(), 0
      for s, images in prefetch(load, range(start, S)):
        # Prefix pool of size n: each step trains after one of its members.
        prefix = prefixes[s % len(prefixes)]
        with _out_of_memory_names(
            f'in the block-{k} train step',
            f'lower --config.train.batch_size={t.batch_size} (raise '
            'train.accum_steps to keep the batch) or set '
            '--config.train.path_chunk'):
          state, metrics = step_fn(state, images, key, table, prefix)
        seen += images.shape[0] * images.shape[1]
        gstep = k * S + s + 1
        if (s + 1) % t.log_every_steps == 0 or s + 1 == S:
          metrics = jax.device_get(metrics)
          dt = time.time() - tick
          metrics['images_per_s'] = seen / max(dt, 1e-9)
          tick, seen = time.time(), 0
          self.writer.write(gstep, metrics, block=k)
          progress.update(s + 1, loss=float(metrics['loss']))
        if (s + 1) % t.checkpoint_every_steps == 0 and s + 1 < S:
          meta.update(block=k, block_step=s + 1)
          checkpoint(state, meta)
      if start < S:
        # the block's training is kept whatever happens while scoring it
        meta.update(block=k, block_step=S)
        checkpoint(state, meta, force=True)

      # Score every path of block k under each prefix of the pool.
      tables = []
      for paths, _ in pool:
        prefix = _prefix_vector(self.space, paths)
        tic = time.time()
        sc = self.config.search
        with _out_of_memory_names(
            f'while scoring block {k}',
            f'lower --config.search.batch_size={sc.batch_size} or '
            f'--config.search.path_chunk={sc.path_chunk} (block {k} is '
            'trained and checkpointed)'):
          tab, losses = self.scorer.score_block(state, k, prefix, val, calib,
                                                val_w)
        log.info('block %d: scored %d paths in %.1fs', k, len(tab),
                     time.time() - tic)
        tables.append((tab, losses))
        meta['tables'].setdefault(str(k), []).append({
            'prefix': [np.asarray(p).tolist() for p in paths],
            'paths': tab.tolist(), 'losses': [float(l) for l in losses]})
      new_pool = search.beam(pool, tables, self.lambdas,
                             self.config.search.top_n)
      meta['pool'] = [[[p.tolist() for p in paths], float(acc)]
                      for paths, acc in new_pool]
      best = new_pool[0][0][-1]
      self.writer.write(
          (k + 1) * S, {'best_block_loss': float(min(tables[0][1]))},
          block=k, best_path=str(best.tolist()))
      meta.update(block=k + 1, block_step=0)
      if k + 1 < K:
        state = self.trainer.start_block(state, k + 1)
      checkpoint(state, meta, force=True)
    self.ckpt.wait()
    return state, meta

  def close(self):
    self.ckpt.close()
    if self.writer is not None:
      self.writer.close()


# ---------------------------------------------------------------------------
# Results: every architecture's score, the top ones, the budgeted pick.

def block_tables_from_meta(meta, num_blocks):
  """meta['tables'] -> per block {prefix key: (table, losses)}, best first."""
  out = []
  for k in range(num_blocks):
    by_prefix = {}
    for entry in meta['tables'][str(k)]:
      key = tuple(int(v) for p in entry['prefix'] for v in p)
      by_prefix[key] = (np.asarray(entry['paths'], np.int32),
                        np.asarray(entry['losses']))
    out.append(by_prefix)
  return out


def write_results(config, space, meta, workdir, max_archs=1_000_000):
  """scores.csv (every architecture, higher score = better), ranking.json.

  Returns the ranking dict (also written) for printing.
  """
  s = config.search
  lambdas = _lambdas(config, space.num_blocks)
  tables = block_tables_from_meta(meta, space.num_blocks)
  best_paths = [np.asarray(p, np.int32) for p in meta['pool'][0][0]]
  ranking = {'space': space.name, 'best': space.to_string(tuple(best_paths)),
             'sign': 'score = -sum_k lambda_k * block_loss_k; higher is better'}
  if space.count() > max_archs:
    ranking['note'] = (f'{space.count()} architectures: too many to write '
                       'them all; the best path of every block is above')
    rows = []
  else:
    archs, scores = search.architecture_scores(space, tables, lambdas)
    rows = []
    for arch, score in zip(archs, scores):
      flops, params = space.flops_params(arch)
      rows.append((space.to_string(arch), float(score), flops, params))
    rows.sort(key=lambda r: -r[1])
    if parallel.is_main_process():
      with open(os.path.join(workdir, 'scores.csv'), 'w') as f:
        f.write('arch,score,flops,params\n')
        for arch, score, flops, params in rows:
          f.write(f'{arch},{score:.6f},{flops},{params}\n')
  top = [{'arch': a, 'score': sc, 'flops': fl, 'params': pa}
         for a, sc, fl, pa in rows[:s.top_k]]
  ranking['top'] = top
  if rows and (s.flops_budget or s.params_budget):
    fits = [r for r in rows
            if (not s.flops_budget or r[2] <= s.flops_budget * 1e6) and
            (not s.params_budget or r[3] <= s.params_budget * 1e6)]
    ranking['budget'] = {
        'flops_budget_M': s.flops_budget, 'params_budget_M': s.params_budget,
        'best': (dict(zip(('arch', 'score', 'flops', 'params'), fits[0]))
                 if fits else None)}
  if parallel.is_main_process():
    with open(os.path.join(workdir, 'ranking.json'), 'w') as f:
      json.dump(ranking, f, indent=1)
  return ranking
