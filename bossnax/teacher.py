"""A trained standalone network as a frozen teacher (method=dna).

`load_teacher(path)` reads either
  * an exported architecture: PATH/spec.json + PATH/weights/ (what
    `python -m bossnax.export` writes, e.g. a supernet path), or
  * a finished `python -m bossnax.retrain` workdir: PATH/config.json +
    PATH/checkpoints/ (+ PATH/retrain_result.json, written at the end);
and returns the network, its arch vector and its variables on the host.
Loaded once per process (cached by path).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Teacher:
  space: Any
  arch_text: str
  net: Any  # flax module: net(x, arch_vec, block=k, output='features', ...)
  arch_vec: tuple[int, ...]
  variables: Any = dataclasses.field(compare=False, hash=False, repr=False)


def _from_export(path):
  from bossnax import export
  space, arch, _ = export.load_spec(os.path.join(path, 'spec.json'))
  net, vec = space.standalone(arch)
  variables = export.load_weights(os.path.join(path, 'weights'), net, vec,
                                  _image_size(space))
  return space, space.to_string(arch), net, vec, variables


def _image_size(space):
  """An input size the network's variables can be built for (their shapes
  do not depend on it for these convolutional stems)."""
  if getattr(space, 'name', '') == 'nats' or getattr(
      space, 'cifar_stem', False) or getattr(space, 'stem', '') == 'cifar':
    return 32
  return 224


def _from_retrain(path):
  import json

  import jax
  import ml_collections
  from bossnax.checkpoint import Checkpointer
  from bossnax.retrain import Retrain
  if not os.path.isfile(os.path.join(path, 'retrain_result.json')):
    raise ValueError(f'the retraining in {path} has not finished (no '
                     'retrain_result.json): finish it with python -m '
                     'bossnax.retrain first')
  with open(os.path.join(path, 'config.json')) as f:
    config = ml_collections.ConfigDict(json.load(f))
  run = Retrain(config)
  ckpt = Checkpointer(os.path.join(path, 'checkpoints'))
  try:
    restored = ckpt.restore_latest(run.state_shapes())
  finally:
    ckpt.close()
    run.batches.close()
  if restored is None:
    raise ValueError(f'no checkpoint in {path}/checkpoints')
  _, state, _ = restored
  variables = jax.device_get({'params': state['params'],
                              'batch_stats': state['batch_stats']})
  return (run.space, run.space.to_string(run.arch), run.net,
          np.asarray(run.arch_vec), variables)


@functools.lru_cache(maxsize=4)
def load_teacher(path: str) -> Teacher:
  if not path:
    raise ValueError('method=dna needs a teacher: pass --config.distill.'
                     'teacher=DIR (an exported spec.json + weights/, or a '
                     'finished bossnax.retrain workdir)')
  if os.path.isfile(os.path.join(path, 'spec.json')):
    parts = _from_export(path)
  elif os.path.isfile(os.path.join(path, 'config.json')) and os.path.isdir(
      os.path.join(path, 'checkpoints')):
    parts = _from_retrain(path)
  else:
    raise ValueError(f'distill.teacher={path!r} holds neither spec.json + '
                     'weights/ (python -m bossnax.export) nor config.json + '
                     'checkpoints/ (python -m bossnax.retrain)')
  import jax
  space, text, net, vec, variables = parts
  variables = jax.device_get(variables)
  return Teacher(space, text, net, tuple(int(v) for v in np.asarray(vec)),
                 {'params': variables['params'],
                  'batch_stats': variables.get('batch_stats', {})})
