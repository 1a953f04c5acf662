r"""BossNAS on the NATS-Bench size space, CIFAR-100: the CIFAR-10 defaults with
the official CIFAR-100 block split (c0,c1) (c2) (c3,c4) and 100 classes.

  python -m bossnax.main --config=configs/nats_cifar100.py \
      --config.data.source=tfds --workdir=/tmp/nats_cifar100
"""

from bossnax import defaults


def get_config(preset: str = ''):
  c = defaults.search_config()
  if preset in defaults.NATS_PRESETS:
    defaults.NATS_PRESETS[preset](c)  # the CIFAR-10 presets, then 100 classes
  elif preset:
    raise ValueError(f'unknown preset {preset!r}: use nats_cifar100.py:quick, '
                     ':real, :real_budget or :tiny')
  c.space.block_split = 'cifar100'
  c.space.num_classes = 100
  c.data.name = 'cifar100'
  if not preset:
    c.data.source = 'tfds'  # the embedded sample is CIFAR-10
  c.augment.mean = defaults.CIFAR100_MEAN
  c.augment.std = defaults.CIFAR100_STD
  c.search.truth_file = ''
  return c
