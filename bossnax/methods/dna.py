"""DNA (Li et al., CVPR 2020), the BossNAS paper's "Supv. distill." baseline:
block-wise distillation from a frozen teacher, BossNAS's block-by-block
plan and beam, paths scored by their validation distillation error.

  python -m bossnax.main --config=configs/nats_cifar10.py:quick \
      --config.method=dna --config.distill.teacher=DIR --workdir=/tmp/dna

DIR: an exported architecture (python -m bossnax.export) or a finished
python -m bossnax.retrain workdir; for NATS the widest network 64:64:64:64:64
(docs/methods.md). DNA's own optimiser settings: defaults.dna_official.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bossnax.methods.bossnas import blockwise_plan
from bossnax.objectives.distill import Distillation

PROJECTIONS = ('auto', 'conv', 'none')


def _feature_shapes(net, arch, num_blocks, size):
  """Block outputs' shapes [H, W, C] of `net` on `arch` (nothing computed);
  a dict scale -> [H, W, C] where a block outputs a map per scale (the
  HyTra supernet)."""
  x = jnp.zeros((1, size, size, 3))
  arch = jnp.asarray(arch, jnp.int32)
  variables = jax.eval_shape(lambda: net.init(jax.random.key(0), x, arch,
                                              mode='train'))
  shapes = []
  for b in range(num_blocks):
    out = jax.eval_shape(lambda v, b=b: net.apply(
        v, x, arch, block=b, mode='eval', output='features'), variables)
    shapes.append({s: tuple(o.shape[1:]) for s, o in out.items()}
                  if isinstance(out, dict) else tuple(out.shape[1:]))
  return shapes


def _scale_ends(space, teacher):
  """Multi-scale spaces: the scale each block ends at, the teacher's; the
  space must end its blocks there (hytra `block_ends`)."""
  t_arch = teacher.space.unflatten(teacher.arch_vec)
  ends = tuple(teacher.space.block_end_stages(t_arch))
  if tuple(getattr(space, 'block_ends', ())) != ends:
    raise ValueError(
        f'method=dna on hytra regresses the teacher {teacher.arch_text} '
        f'block by block at its scales: set --config.space.block_ends='
        f'"{ends}" (where its blocks end; now '
        f'{tuple(getattr(space, "block_ends", ())) or "free"})')
  return ends


def projections(space, teacher, mode, image_size, embed_dim):
  """(per block the channels of the student's 1x1 projection, 0 = none;
  per block the supernet's output channels; multi-scale spaces: per block
  the supernet's output slots (scale, H, W, C) and the scale it ends at,
  else () and ()): 'auto' projects where the widths differ or the path
  picks the width."""
  if mode not in PROJECTIONS:
    raise ValueError(f'distill.projection={mode!r}: use one of '
                     f'{", ".join(PROJECTIONS)}')
  nb = space.num_blocks
  student = _feature_shapes(space.supernet(embed_dim),
                            space.flatten(space.default_arch()), nb,
                            image_size)
  target = _feature_shapes(teacher.net, np.asarray(teacher.arch_vec), nb,
                           image_size)
  slots, ends = (), ()
  if isinstance(student[0], dict):  # the map of the teacher's scale
    ends = _scale_ends(space, teacher)
    slots = tuple(tuple((s, *shape) for s, shape in sorted(st.items()))
                  for st in student)
    student = [st[e] for st, e in zip(student, ends)]
  out = []
  for b, (s, t) in enumerate(zip(student, target)):
    if s[:2] != t[:2]:
      raise ValueError(
          f'block {b}: the student outputs {s[0]}x{s[1]} maps, the teacher '
          f'{teacher.arch_text} {t[0]}x{t[1]}: distil from a teacher with the '
          'same downsampling')
    if b < nb - 1 and s[2] != t[2]:
      raise ValueError(
          f'block {b + 1} takes the teacher\'s block-{b} output ({t[2]} '
          f'channels) but the supernet reads {s[2]}: use a teacher whose '
          'block outputs have the supernet\'s full widths (NATS: the widest '
          'network; HyTra: the same base_width)')
    differ = s[2] != t[2] or space.block_output_varies(b)
    if mode == 'none' and differ:
      raise ValueError(f'block {b}: {s[2]} student channels (path-dependent: '
                       f'{space.block_output_varies(b)}) against the '
                       f"teacher's {t[2]}: set distill.projection=auto")
    out.append(t[2] if mode == 'conv' or (mode == 'auto' and differ) else 0)
  return tuple(out), tuple(s[2] for s in student), slots, ends


def build(config, space):
  from bossnax.teacher import load_teacher
  d = config.distill
  if config.train.width_groups > 1 or config.search.width_groups > 1:
    raise ValueError('method=dna runs every path at full width (its '
                     'projections read the full-width features): set '
                     'train.width_groups=1 and search.width_groups=1')
  teacher = load_teacher(d.teacher)
  if space.num_blocks != getattr(teacher.space, 'num_blocks', None):
    raise ValueError(f'the teacher {d.teacher} has '
                     f'{teacher.space.num_blocks} blocks, the space '
                     f'{space.num_blocks}: use a teacher of the same space')
  project, channels, slots, ends = projections(
      space, teacher, d.projection, config.data.image_size,
      config.model.embed_dim)
  objective = Distillation(teacher_path=d.teacher, project=project,
                           student_channels=channels, slots=slots, ends=ends)
  return blockwise_plan('dna', objective, config, space)
