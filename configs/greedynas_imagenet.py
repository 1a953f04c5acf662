r"""GreedyNAS on ImageNet (You et al., CVPR 2020): the SPOS / ProxylessNAS
mobile space (21 searched layers; MBConv kernel 3/5/7 x expansion 3/6 and
the identity, which skips the layer, where the shape is kept), a greedy
one-shot supervised supernet, then an evolution from the candidate pool
under 330 M MAdds.

  python -m bossnax.main --config=configs/greedynas_imagenet.py --workdir=DIR \
      --config.data.source=folder --config.data.path=/data/imagenet \
      --config.data.workers=8          # or tfds imagenet2012 (README "Data")

The supernet's recipe is the paper's: SGD momentum 0.9, lr 0.12 at batch
1024 (scaled linearly), weight decay 4e-5, cosine, label smoothing 0.1, 120
epochs; 50,000 images (50 per class) held out of ImageNet-train are the
validation set (the rejection's 1,000-image subset, the search's fitness),
ImageNet's own validation set is the test set. docs/greedynas.md.
"""

from bossnax import defaults


def get_config(preset: str = ''):
  c = defaults.mbconv_base()
  c.method = 'greedynas'
  c.dtype = 'bfloat16'
  c.space.layout = 'spos'
  defaults.imagenet_search_data(c)
  c.augment.ops = 'rrc,flip'  # a supervised recipe: no BYOL colour views
  defaults.greedynas_recipe(c)
  c.train.batch_size = 1024
  c.train.accum_steps = 1
  c.train.epochs_per_block = 120  # the whole supernet: one stage
  c.train.log_every_steps = 50
  c.train.checkpoint_every_steps = 1000
  c.search.num_images = 10000  # of the 50,000 held out: the search's
  c.search.batch_size = 256
  c.search.calib_batch = 256
  c.search.flops_budget = 330.0
  c.search.archs_file = c.search.truth_file = ''  # the 23 are BossNAS's
  if preset:
    raise ValueError(f'unknown preset {preset!r}: greedynas_imagenet.py has '
                     'none; configs/greedynas_cifar.py has :quick and :tiny')
  return c
