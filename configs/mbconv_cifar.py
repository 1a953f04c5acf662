r"""BossNAS on the MBConv space, CIFAR-10: a stride-1 stem for 32x32 images
(the stages then run at 32, 16, 8, 8 and 4 pixels), the embedded real
CIFAR-10 images by default.

  python -m bossnax.main --config=configs/mbconv_cifar.py --workdir=DIR \
      [--config.data.source=archive --config.data.path=cifar-10-python.tar.gz]
  python -m bossnax.main --config=configs/mbconv_cifar.py:quick --workdir=DIR
      # CPU smoke run of the whole pipeline (narrow, one layer per stage)
  python -m bossnax.main --config=configs/mbconv_cifar.py:tiny --workdir=DIR
      # the test preset
"""

from bossnax import defaults


def get_config(preset: str = ''):
  c = defaults.mbconv_base()
  c.space.num_classes = 10
  c.space.cifar_stem = True
  c.model.proj_hidden = 1024
  c.model.proj_dim = 128
  c.model.pred_hidden = 1024
  defaults.cifar10_search_data(c)
  c.train.batch_size = 256
  c.train.accum_steps = 1
  c.train.lr = 0.48
  c.train.epochs_per_block = 20
  c.search.batch_size = 256
  c.search.calib_batch = 256
  c.search.truth_file = ''  # the 23's accuracies are ImageNet's
  if preset == 'quick':
    _quick(c)
  elif preset == 'tiny':
    _quick(c)
    _tiny(c)
  elif preset:
    raise ValueError(f'unknown preset {preset!r}: use mbconv_cifar.py:quick '
                     'or :tiny')
  return c


def _quick(c):
  """Minutes on a 2-core CPU: one layer per stage, a quarter of the widths,
  16x16 images; the candidates, fair sampling, scoring and ranking are the
  real ones (4 candidates per layer: 4 / 4 / 4 / 4 / 4 paths per block)."""
  c.space.stage_layers = (1, 1, 1, 1, 1)
  c.space.stage_widths = (8, 16, 24, 32, 48)
  c.model.proj_hidden = 128
  c.model.proj_dim = 32
  c.model.pred_hidden = 128
  c.data.train_images = 256
  c.data.image_size = 16
  c.train.batch_size = 32
  c.train.epochs_per_block = 1
  c.train.warmup_epochs = 0.2
  c.train.log_every_steps = 2
  c.train.checkpoint_every_steps = 8
  c.search.num_images = 32
  c.search.batch_size = 32
  c.search.calib_batch = 32
  c.search.archs_file = ''  # one layer per stage: all 1,024 are scored


def _tiny(c):
  """For tests: 48 images, 3 steps per block, every width 8."""
  c.space.stage_widths = (8, 8, 8, 8, 8)
  c.data.train_images = 48
  c.train.batch_size = 16
  c.train.log_every_steps = 1
  c.train.checkpoint_every_steps = 2
  c.search.num_images = 16
  c.search.batch_size = 16
  c.search.calib_batch = 16
