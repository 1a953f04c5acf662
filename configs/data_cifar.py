r"""DATA (GAIA-ssl) on the embedded real CIFAR-10 images: a DynamicResNet
supernet a quarter as wide as GAIA-ssl's with a 3x3 stride-1 stem for
32x32 images and shallower stages, MoCo v2 with the sandwich rule, then
40 random subnets of a MAdds band ranked by closeness to the largest
network, the best exported with its inherited weights (docs/data.md).

  python -m bossnax.main --config=configs/data_cifar.py --workdir=DIR \
      [--config.data.source=archive --config.data.path=cifar-10-python.tar.gz]
  python -m bossnax.main --config=configs/data_cifar.py:quick --workdir=DIR
      # minutes on a 2-core CPU: the whole pipeline
  python -m bossnax.main --config=configs/data_cifar.py:tiny --workdir=DIR
      # the test preset
  python -m bossnax.retrain --spec=DIR/best/spec.json --weights=DIR/best/weights ...
      # fine-tune the selected subnet on labels (docs/retrain.md)

1,000 of the training images (100 per class) are held out: the
downstream images the selection embeds; the embedded test images are the
test set of the export's evaluation.
"""

from bossnax import defaults


def get_config(preset: str = ''):
  c = defaults.dynresnet_base()
  c.space.stem = 'cifar'
  c.space.image_size = 32
  c.space.num_classes = 10
  c.space.stem_widths = (8, 12, 16)
  c.space.stage_widths = ((12, 16, 20), (24, 32, 40), (48, 64, 80),
                          (96, 128, 160))
  c.space.stage_depths = ((1, 2), (1, 2, 3), (2, 3, 4, 5, 6), (1, 2))
  defaults.cifar10_search_data(c)
  defaults.data_recipe(c)
  c.data.holdout_per_class = 100
  c.augment.ops = 'crop_flip,color,gray,flip'  # 32x32: no blur, light crop
  c.train.batch_size = 256
  c.moco.queue_size = 4096
  c.moco.neck_hidden = 512
  c.search.batch_size = 250
  c.search.calib_batch = 256
  c.search.num_images = 0  # the 1,000 held out
  c.search.path_chunk = 8
  c.search.min_flops, c.search.flops_budget = 40.0, 60.0  # around the median
  c.export_best = True
  if preset == 'quick':
    _quick(c)
  elif preset == 'tiny':
    _quick(c)
    _tiny(c)
  elif preset:
    raise ValueError(f'unknown preset {preset!r}: use data_cifar.py:quick or '
                     ':tiny')
  return c


def _quick(c):
  """Minutes on a 2-core CPU: half the widths, depths up to 2 / 2 / 3 / 1,
  16x16 images, 512 training images for 6 epochs; the sandwich, queue,
  key encoder, selection and export are the real ones."""
  c.space.stem_widths = (4, 8)
  c.space.stage_widths = ((4, 8), (8, 16), (16, 32), (32, 64))
  c.space.stage_depths = ((1, 2), (1, 2), (1, 2, 3), (1,))
  c.data.train_images = 612
  c.data.holdout_per_class = 10  # 100 downstream images, 512 to train
  c.data.image_size = 16
  c.train.batch_size = 32
  c.train.epochs_per_block = 6  # 16 steps an epoch
  c.train.log_every_steps = 8
  c.train.checkpoint_every_steps = 48
  c.moco.queue_size = 256
  c.moco.feat_dim = 32
  c.moco.neck_hidden = 64
  # 96 steps: at 0.999 the key encoder would stay 91% its initial weights
  c.moco.momentum = 0.99
  c.search.num_images = 100
  c.search.batch_size = 50
  c.search.calib_batch = 32
  c.search.evaluations = 40
  c.search.min_flops, c.search.flops_budget = 0.0, 0.0


def _tiny(c):
  """For tests: one width per stage but the stem's, depths 1-2 in two
  stages, 48 training images (3 steps), 16 downstream images, 8
  candidates."""
  c.space.stem_widths = (4, 8)
  c.space.stage_widths = ((4,), (8,))
  c.space.stage_depths = ((1, 2), (1, 2))
  c.data.train_images = 64
  c.data.holdout_per_class = 0
  c.data.holdout_fraction = 0.25  # 16 downstream images
  c.train.batch_size = 16
  c.train.epochs_per_block = 1
  c.train.log_every_steps = 1
  c.train.checkpoint_every_steps = 2
  c.moco.queue_size = 64
  c.moco.feat_dim = 16
  c.moco.neck_hidden = 32
  c.search.num_images = 16
  c.search.batch_size = 16
  c.search.calib_batch = 16
  c.search.evaluations = 8
