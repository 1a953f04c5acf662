"""DATA (GAIA-ssl): a self-supervised supernet whose key encoder is always
the largest network, and subnets chosen by their similarity to it.

Training (MoCo v2 on the supernet): the query encoder is the supernet at
each sampled path (the sandwich: largest, smallest, random ones,
samplers.SandwichSampler) with a two-layer MLP neck; the key encoder is the
EMA of the supernet, always run at the largest architecture. A path's loss
is InfoNCE of its query on view 1 against the key of view 2 and a queue of
earlier keys (temperature T); each step enqueues the keys once. The
'byol' variant replaces the queue by a predictor and BYOL's symmetric
regression onto the key projections (the loss family of BossNAS, for the
comparison on NATS); the queue still fills, for the 'relation' distance.

Scoring (search.evaluator=similarity_to_largest): on clean images, the
distance between a path's projection and the key encoder's at the largest
network (bossnax/objectives/similarity.py), lower = closer.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from bossnax.nn.grouping import block_heads
from bossnax.objectives import similarity
from bossnax.objectives.base import Objective
from bossnax.objectives.bootstrap import MLP, normalize, regression_loss

LOSSES = ('moco', 'byol')


class Neck(nn.Module):
  """MoCo v2's neck: Linear - ReLU - Linear (no batch norm)."""
  hidden: int
  out: int

  @nn.compact
  def __call__(self, x):
    return nn.Dense(self.out, name='fc2')(
        nn.relu(nn.Dense(self.hidden, name='fc1')(x)))


class SandwichEncoder(nn.Module):
  """The whole supernet at path `arch` plus the neck (and for 'byol' a
  predictor): {'z': projection, 'p': prediction (= z for 'moco'), 'map':
  the last feature map}. Heads live under heads/block0 (one stage)."""
  backbone: nn.Module
  hidden: int = 2048
  dim: int = 128
  pred_hidden: int = 0  # 0: no predictor (MoCo); > 0: BYOL's, with BN
  grouped: bool = True

  @nn.compact
  def __call__(self, x, arch, *, block: int = 0, mode: str = 'train',
               start=False):
    del block, start  # one stage: the whole network from the image
    pooled, fmap = self.backbone(x, arch, mode=mode, output='pooled')

    def head(b, e):
      del b
      if not self.pred_hidden:
        z = Neck(self.hidden, self.dim, name='neck')(e)
        return z, z
      z = MLP(self.hidden, self.dim, name='neck')(e, mode)
      return z, MLP(self.pred_hidden, self.dim, name='predictor')(z, mode)
    z, p = block_heads(self, head, {0: pooled}, 1, self.grouped)[0]
    return {'z': z, 'p': p, 'map': fmap}


def info_nce(q, k, queue, temperature):
  """Per-example MoCo loss [..., B]: query q against its key k (positive)
  and the queue's keys (negatives); q, k normalised here, queue as is."""
  q, k = normalize(q), normalize(k)
  pos = (q * k).sum(-1, keepdims=True)
  neg = q @ queue.astype(jnp.float32).T
  logits = jnp.concatenate([pos, neg], -1) / temperature
  return optax.softmax_cross_entropy_with_integer_labels(
      logits, jnp.zeros(logits.shape[:-1], jnp.int32))


def enqueue(queue, ptr, keys):
  """(queue with `keys` [B, D] written at `ptr`, the next pointer): the
  oldest keys go first (a ring, as MoCo's)."""
  n = keys.shape[0]
  if queue.shape[0] % n:
    raise ValueError(f'moco.queue_size={queue.shape[0]} must be a multiple '
                     f'of the micro-batch ({n} images)')
  queue = jax.lax.dynamic_update_slice(queue, keys.astype(queue.dtype),
                                       (ptr, 0))
  return queue, (ptr + n) % queue.shape[0]


@dataclasses.dataclass(frozen=True)
class SandwichContrastive(Objective):
  name = 'sandwich_contrastive'
  score_views = 'clean'  # the downstream images as they are
  largest: tuple = ()  # the largest architecture, flat (the key encoder's)
  loss_kind: str = 'moco'  # 'moco' | 'byol'
  queue_size: int = 65536
  dim: int = 128
  hidden: int = 2048
  pred_hidden: int = 4096  # 'byol' only
  temperature: float = 0.2
  momentum: float = 0.999  # of the key encoder (EMA), constant
  distance: str = 'cosine'  # search.similarity (objectives/similarity.py)
  distance_temperature: float = 0.2

  def __post_init__(self):
    if self.loss_kind not in LOSSES:
      raise ValueError(f'moco.loss={self.loss_kind!r}: use one of '
                       f'{", ".join(LOSSES)}')
    if self.distance not in similarity.DISTANCES:
      raise ValueError(f'search.similarity={self.distance!r}: use one of '
                       f'{", ".join(similarity.DISTANCES)}')
    if self.queue_size < 1 or not 0.0 <= self.momentum < 1.0:
      raise ValueError('moco.queue_size must be >= 1 and moco.momentum in '
                       '[0, 1)')

  @classmethod
  def from_config(cls, config, space):
    m, s = config.moco, config.search
    return cls(largest=tuple(int(i) for i in space.flatten(space.largest())),
               loss_kind=m.loss, queue_size=int(m.queue_size),
               dim=int(m.feat_dim), hidden=int(m.neck_hidden),
               pred_hidden=int(m.pred_hidden),
               temperature=float(m.temperature), momentum=float(m.momentum),
               distance=s.similarity,
               distance_temperature=float(s.similarity_temperature))

  def model(self, backbone, num_blocks):
    del num_blocks
    return SandwichEncoder(backbone, self.hidden, self.dim,
                           self.pred_hidden if self.loss_kind == 'byol'
                           else 0)

  def init_extra(self, params, batch_stats):
    # The key encoder starts as the query encoder (copies: the step donates
    # the state); the queue starts as random unit keys, as MoCo's.
    queue = normalize(jax.random.normal(jax.random.key(0),
                                        (self.queue_size, self.dim)))
    return {'params': jax.tree.map(jnp.copy, params),
            'batch_stats': jax.tree.map(jnp.copy, batch_stats),
            'queue': queue, 'ptr': jnp.zeros((), jnp.int32)}

  def _largest(self):
    return jnp.asarray(self.largest, jnp.int32)[None]

  def targets(self, forward, extra, archs, views, labels=None):
    del archs, labels  # the key encoder runs at the largest network only
    # MoCo reads the key of the second view only (its query is the first
    # view's): one forward of the largest network, as the official code.
    key_views = views[1:] if self.loss_kind == 'moco' else views
    outs, stats = forward(extra['params'], extra['batch_stats'],
                          self._largest(), key_views)
    keys = tuple(jax.lax.stop_gradient(normalize(o['z'][0])) for o in outs)
    if self.loss_kind == 'moco':
      keys = (None, keys[0])
    # This micro-batch's negatives are the queue before its own keys.
    queue, ptr = enqueue(extra['queue'], extra['ptr'], keys[1])
    targets = (keys, jax.lax.stop_gradient(extra['queue']))
    return targets, {**extra, 'batch_stats': stats, 'queue': queue,
                     'ptr': ptr}

  def loss(self, forward, params, stats, targets, slots, archs, views,
           labels=None):
    del slots, labels  # one key per image, whatever the path
    (k1, k2), queue = targets
    if self.loss_kind == 'moco':
      (out,), new_stats = forward(params, stats, archs, views[:1])
      loss = info_nce(out['z'], k2[None], queue,
                      self.temperature).mean(1)  # [C]
    else:
      (o1, o2), new_stats = forward(params, stats, archs, views)
      loss = (regression_loss(o1['p'], k2[None]) +
              regression_loss(o2['p'], k1[None])).mean(1)
    # Gradients add up over the sandwich's paths (one optimiser step).
    return loss.sum(), (loss.mean(), new_stats)

  def train_mask(self, owned):
    return jax.tree.map(lambda _: True, owned)

  def update_extra(self, extra, params, step, total_steps, owned):
    del step, total_steps, owned  # one stage: every weight has a key copy
    return {**extra, 'params': optax.incremental_update(
        params, extra['params'], 1.0 - self.momentum)}

  def score_sides(self, state):
    return ((state['params'], state['batch_stats']),
            (state['extra']['params'], state['extra']['batch_stats']))

  def calibrated_sides(self, num_sides):
    del num_sides
    # The key encoder (side 1) runs only at the largest network, with its
    # own running statistics (run.at): no per-path recalibration of it.
    return (0,)

  def score(self, run, weights, labels=None):
    del labels  # no labels: closeness to the largest network
    kind, temp = self.distance, self.distance_temperature
    key = run.at(1, self.largest, lambda apply, views: apply(views[0]))

    def one(apply, views, i):
      del i
      out = apply(views[0])
      if kind in similarity.DENSE:
        d = similarity.dense_distance(kind, out['map'], key['map'], temp)
      else:
        d = similarity.global_distance(kind, out['z'], key['z'],
                                       run.extra['queue'], temp)
      return (d * weights).sum()
    return run(0, one)

  def variables(self, state, which='online'):
    if which == 'online':
      return {'params': state['params'], 'batch_stats': state['batch_stats']}
    if which == 'target':
      return {'params': state['extra']['params'],
              'batch_stats': state['extra']['batch_stats']}
    raise ValueError(f'--weights={which}: use online or target')
