r"""GreedyNAS on the embedded real CIFAR-10 images: the SPOS / ProxylessNAS
mobile space with a stride-1 stem for 32x32 images, the greedy supernet
and the evolution from the candidate pool (docs/greedynas.md).

  python -m bossnax.main --config=configs/greedynas_cifar.py --workdir=DIR \
      [--config.data.source=archive --config.data.path=cifar-10-python.tar.gz]
  python -m bossnax.main --config=configs/greedynas_cifar.py:quick --workdir=DIR
      # minutes on a 2-core CPU: the whole pipeline, early stop included
  python -m bossnax.main --config=configs/greedynas_cifar.py:tiny --workdir=DIR
      # the test preset

1,000 of the training images (100 per class) are held out as the
validation set: the rejection's subset and the search's fitness; the
embedded test images are the test set.
"""

from bossnax import defaults


def get_config(preset: str = ''):
  c = defaults.mbconv_base()
  c.method = 'greedynas'
  c.space.layout = 'spos'
  c.space.num_classes = 10
  c.space.cifar_stem = True
  defaults.cifar10_search_data(c)
  c.data.holdout_per_class = 100
  defaults.greedynas_recipe(c)
  c.train.batch_size = 256
  c.train.epochs_per_block = 120
  c.search.batch_size = 256
  c.search.calib_batch = 256
  c.search.num_images = 0  # the 1,000 held out
  c.search.flops_budget = 0.0  # CIFAR networks: no published budget
  c.search.archs_file = c.search.truth_file = ''
  if preset == 'quick':
    _quick(c)
  elif preset == 'tiny':
    _quick(c)
    _tiny(c)
  elif preset:
    raise ValueError(f'unknown preset {preset!r}: use greedynas_cifar.py:quick '
                     'or :tiny')
  return c


def _quick(c):
  """Minutes on a 2-core CPU: 2 / 2 / 1 / 1 / 1 / 1 layers (the second
  layer of the first two stages can be the identity), narrow, 16x16
  images, a pool of 20 and an early-stop check every 10 steps; the
  rejection, pool, early stop and evolution are the real ones."""
  c.space.stage_layers = (2, 2, 1, 1, 1, 1)
  c.space.stage_widths = (8, 16, 24, 32, 48, 64)
  c.data.train_images = 612
  c.data.holdout_per_class = 10  # 100 validation images, 512 to train
  c.data.image_size = 16
  c.train.batch_size = 32
  c.train.epochs_per_block = 8  # 16 steps an epoch: 128 steps at most
  c.train.log_every_steps = 5
  c.train.checkpoint_every_steps = 40
  c.greedy.pool_size = 20
  c.greedy.val_images = 64
  c.greedy.calib_batch = 16
  c.greedy.check_every_steps = 10
  c.search.num_images = 64
  c.search.batch_size = 32
  c.search.calib_batch = 16
  c.search.strategy = 'evolution'
  c.search.evaluations = 100
  c.search.evolution.population = 16  # batches of 16 and 8: two programs
  c.search.evolution.generations = 5
  c.search.evolution.parents = 5
  c.search.evolution.mutations = 8
  c.search.evolution.crossovers = 8


def _tiny(c):
  """For tests: 2 / 1 / 1 / 1 / 1 / 1 layers, every width 8, 48 training
  images (3 steps an epoch, 15 steps), 16 validation images, 4 candidates,
  2 kept, a pool of 4."""
  c.space.stage_layers = (2, 1, 1, 1, 1, 1)
  c.space.stage_widths = (8, 8, 8, 8, 8, 8)
  c.data.train_images = 64
  c.data.holdout_per_class = 0
  c.data.holdout_fraction = 0.25  # 16 validation images
  c.train.batch_size = 16
  c.train.epochs_per_block = 5  # 3 steps an epoch: 15 steps
  c.train.log_every_steps = 1
  c.train.checkpoint_every_steps = 3  # rounds of 2 steps: some mid-round
  c.greedy.sample = 4
  c.greedy.keep = 2
  c.greedy.pool_size = 4
  c.greedy.val_images = 16
  c.greedy.check_every_steps = 2
  c.search.num_images = 16
  c.search.batch_size = 16
  c.search.evaluations = 12
  c.search.evolution.population = 4  # batches of 4, as the rejection's
  c.search.evolution.generations = 1
  c.search.evolution.parents = 2
  c.search.evolution.mutations = 4
  c.search.evolution.crossovers = 4
