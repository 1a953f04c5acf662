r"""BossNAS on the NATS-Bench size space, CIFAR-100: the CIFAR-10 defaults with
the official CIFAR-100 block split (c0,c1) (c2) (c3,c4) and 100 classes.

  python -m bossnax.main --config=configs/nats_cifar100.py \
      --config.data.source=tfds --workdir=/tmp/nats_cifar100
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    'nats_cifar10', os.path.join(os.path.dirname(__file__), 'nats_cifar10.py'))
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)

CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


def get_config(preset: str = ''):
  c = _base.get_config(preset)
  c.space.block_split = 'cifar100'
  c.space.num_classes = 100
  c.data.name = 'cifar100'
  if not preset:
    c.data.source = 'tfds'  # the embedded sample is CIFAR-10
  c.augment.mean = CIFAR100_MEAN
  c.augment.std = CIFAR100_STD
  c.search.truth_file = ''
  return c
