"""Block-wise supervised distillation (DNA, Li et al., CVPR 2020; the BossNAS
paper's "Supv. distill." baseline, Table 5).

A frozen teacher (a trained standalone network) gives every block its input
and its target: each student path of block k takes the teacher's block k-1
output (the image for block 0) and regresses the teacher's block k output
with the mean squared error (PyTorch's MSELoss, as DNA). Where a path's
output cannot match the teacher's width (NATS: the block's last width is
searched) a per-block 1x1 convolution to the teacher's width comes first.
A path is scored by the same error on clean validation images, after its
batch statistics are recalibrated; an architecture by the sum over blocks
(DNA's 'sum' join). Blocks do not depend on each other's choices here, so
the searcher's prefixes change nothing but what is computed.

On a multi-scale space (HyTra: a block's output is a map per scale) every
block ends at the teacher's scale (the space's `block_ends`, set from the
teacher by methods/dna.py): the teacher's map enters the supernet's slot of
that scale (zeros at the others) and the student's map of that slot is
regressed, at the same resolution and width as the teacher's.

The teacher's variables sit in the state under params/batch_stats 'teacher'
(loaded at initialisation, `init_variables`); they never train (train_mask)
and receive no gradient; the teacher always runs in eval mode.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from bossnax.nn.grouping import block_heads
from bossnax.objectives.base import Objective


class Distiller(nn.Module):
  """Supernet + frozen teacher + per-block projections. Called like the
  other objectives' models; returns (student output, teacher target) of
  block `block` for path `arch`."""
  backbone: nn.Module
  teacher: nn.Module
  teacher_arch: tuple
  num_blocks: int
  project: tuple  # per block: channels of the 1x1 projection, 0 = none
  student_channels: tuple  # per block: the supernet's output channels
  # Multi-scale spaces: per block the supernet's output slots ((scale, H, W,
  # C), ...) and the scale the block ends at (the teacher's); () otherwise.
  slots: tuple = ()
  ends: tuple = ()
  grouped: bool = True

  def _teach(self, x, block, start=False):
    arch = jnp.asarray(self.teacher_arch, jnp.int32)
    return jax.lax.stop_gradient(self.teacher(
        x, arch, block=block, mode='eval', output='features', start=start))

  def _as_input(self, f, block):
    """The teacher's block-`block` output as block `block + 1` reads it:
    the map, or on a multi-scale space the slots dict with the map at the
    block's end scale and zeros at the others."""
    if not self.slots:
      return f
    return {s: f if s == self.ends[block] else
            jnp.zeros((f.shape[0], h, w, c), f.dtype)
            for s, h, w, c in self.slots[block]}

  def prefix(self, x, arch, *, block: int, mode: str = 'frozen'):
    """The student's input of block `block`: the teacher's block-1 output
    (the same for every path: computed once by the trainer and scorer)."""
    del arch, mode
    return self._as_input(self._teach(x, block - 1), block - 1)

  @nn.compact
  def __call__(self, x, arch, *, block: int, mode: str, start=False):
    def head(b, f):
      if not self.project[b]:
        return f
      return nn.Conv(self.project[b], (1, 1), name=f'projection{b}')(f)

    run = lambda feats: block_heads(self, head, feats, self.num_blocks,
                                    self.grouped)[block]
    if self.is_initializing():  # every block's layers and projection
      self.backbone(x, arch, mode=mode)
      return run({b: jnp.zeros((1, 1, 1, c), x.dtype)
                  for b, c in enumerate(self.student_channels)}), None
    if block > 0 and not start:  # from the image: the teacher's prefix
      x, start = self._as_input(self._teach(x, block - 1), block - 1), True
    h = self.backbone(x, arch, block=block, mode=mode, output='features',
                      start=start and block > 0)
    target = self._teach(x, block, start=start and block > 0)
    if self.slots:  # the slot of the teacher's scale
      h = h[self.ends[block]]
    return run({block: h}), target


def feature_mse(student, target):
  """Per-example mean squared error over every feature element."""
  d = student.astype(jnp.float32) - target.astype(jnp.float32)
  return (d * d).reshape(d.shape[0], -1).mean(-1)


@dataclasses.dataclass(frozen=True)
class Distillation(Objective):
  name = 'dna'
  score_views = 'clean'
  teacher_path: str = ''
  project: tuple = ()  # per block, from methods/dna.py
  student_channels: tuple = ()
  slots: tuple = ()  # multi-scale spaces: see Distiller
  ends: tuple = ()

  @property
  def _teacher(self):
    from bossnax.teacher import load_teacher
    return load_teacher(self.teacher_path)

  def model(self, backbone, num_blocks):
    t = self._teacher
    return Distiller(backbone, t.net, t.arch_vec, num_blocks,
                     self.project or (0,) * num_blocks,
                     self.student_channels or (0,) * num_blocks,
                     self.slots, self.ends)

  def init_variables(self, params, batch_stats):
    v = self._teacher.variables
    to = lambda tree: jax.tree.map(jnp.asarray, tree)
    return ({**params, 'teacher': to(v['params'])},
            {**batch_stats, 'teacher': to(v['batch_stats'])})

  def train_mask(self, owned):
    return {**owned, 'teacher': jax.tree.map(lambda _: False,
                                             owned['teacher'])}

  def loss(self, forward, params, stats, targets, slots, archs, views,
           labels=None):
    del targets, slots, labels
    params = {**params, 'teacher': jax.lax.stop_gradient(params['teacher'])}
    # One augmented view (DNA trains on one).
    ((student, target),), new_stats = forward(params, stats, archs,
                                              views[:1])
    loss = jax.vmap(lambda s, t: feature_mse(s, t).mean())(student, target)
    new_stats = {**new_stats, 'teacher': stats['teacher']}
    return loss.sum(), (loss.mean(), new_stats)

  def score(self, run, weights, labels=None):
    del labels

    def one(apply, views, i):
      del i
      student, target = apply(views[0])
      return (feature_mse(student, target) * weights).sum()
    return run(0, one)
