r"""BossNAS on the HyTra fabric, CIFAR-10.

The ImageNet stem (7x7 stride 2 + max-pool) would leave 1x1 maps at 1/32 of
a 32x32 image (the official HyTra fails on CIFAR-10, BossNAS issue #9), so
this variant uses a 3x3 stride-1 stem: the four scales are 32, 16, 8 and 4
pixels. Widths are a quarter of the paper's by default (base_width 16).

  python -m bossnax.main --config=configs/hytra_cifar.py --workdir=DIR \
      [--config.data.source=tfds]            # full CIFAR-10 (internet)
  python -m bossnax.main --config=configs/hytra_cifar.py:real --workdir=DIR
      # the 5,085 real images of ../shared (GPU)
  python -m bossnax.main --config=configs/hytra_cifar.py:tiny --workdir=DIR
      # CPU smoke run
"""

from bossnax import defaults


def get_config(preset: str = ''):
  c = defaults.hytra_base()  # the paper's search, ImageNet values
  c.space.num_classes = 10
  c.space.stem = 'cifar'
  c.space.base_width = 16
  c.space.heads = (2, 4)  # head dim 32 at base width 16
  c.model.embed_dim = 512  # the 1/32 width at base width 16
  c.model.proj_hidden = 1024
  c.model.proj_dim = 128
  c.model.pred_hidden = 1024
  defaults.cifar10_search_data(c)
  c.train.batch_size = 256
  c.train.accum_steps = 1
  c.train.lr = 0.48
  c.train.lr_batch = 4096
  c.train.epochs_per_block = 20
  c.train.warmup_epochs = 1.0
  c.search.batch_size = 256
  c.search.calib_batch = 256
  if preset == 'real':
    c.data.source = 'npz'
    c.data.path = '../shared/data/cifar10_real_subset.npz'
    c.dtype = 'bfloat16'
  elif preset == 'tiny':
    _tiny(c)
  elif preset:
    raise ValueError(f'unknown preset {preset!r}: use hytra_cifar.py:real '
                     'or :tiny')
  return c


def _tiny(c):
  """A CPU smoke run: one layer per block (a 4-layer fabric), narrow, 16x16
  images, a few steps per block. The supernet holds a candidate per layer,
  scale, type and stride variant; compiling them, not running them,
  dominates on a CPU (docs/hytra.md)."""
  c.space.depth = 1
  c.space.base_width = 4
  c.space.heads = (1, 2)
  c.model.embed_dim = 128
  c.model.proj_hidden = 32
  c.model.proj_dim = 16
  c.model.pred_hidden = 32
  c.data.train_images = 32
  c.data.image_size = 16
  c.train.batch_size = 16
  c.train.epochs_per_block = 1
  c.train.warmup_epochs = 0.5
  c.train.paths_per_step = 2
  c.train.log_every_steps = 1
  c.train.checkpoint_every_steps = 100
  c.search.num_images = 16
  c.search.batch_size = 16
  c.search.calib_batch = 16
