r"""BossNAS on the NATS-Bench size search space, CIFAR-10 (paper defaults).

Full run (the official schedule: effective batch 4096 = 1024 x 4 accumulation
steps, LARS lr 0.48 at 4096, 50 epochs per block, 8 fair paths per step):

  python -m bossnax.main --config=configs/nats_cifar10.py \
      --config.data.source=tfds --workdir=/tmp/nats_cifar10

CPU preset on the embedded real CIFAR-10 subset (minutes on 2 cores):

  python -m bossnax.main --config=configs/nats_cifar10.py:quick --workdir=/tmp/quick

The schema (every key, commented) and the presets :quick, :real,
:real_budget and :tiny are in bossnax/defaults.py, shared with nats_cifar100.py.
"""

from bossnax import defaults


def get_config(preset: str = ''):
  c = defaults.search_config()  # every key, with the paper's defaults
  if preset in defaults.NATS_PRESETS:
    defaults.NATS_PRESETS[preset](c)  # quick, real, real_budget or tiny
  elif preset:
    raise ValueError(f'unknown preset {preset!r}: use nats_cifar10.py:quick, '
                     ':real, :real_budget or :tiny')
  return c
