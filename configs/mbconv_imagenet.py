r"""BossNAS on the MBConv space, ImageNet (the paper's ranking study).

  python -m bossnax.main --config=configs/mbconv_imagenet.py --workdir=DIR \
      --config.data.source=folder --config.data.path=/data/imagenet \
      --config.data.workers=8          # or tfds imagenet2012 (README "Data")

18 searched layers in 5 blocks, 4 candidates each (docs/mbconv.md). As in
the paper, 50 images per class are held out of the training set for the
search; BYOL's augmentations make a view pair per path.

':dna' is DNA on its own MBConv layout with its official settings
(defaults.dna_official), given a teacher of that layout's widths.
"""

from bossnax import defaults


def get_config(preset: str = ''):
  c = defaults.mbconv_base()
  c.dtype = 'bfloat16'  # the official run used fp16 (apex)
  defaults.imagenet_search_data(c)
  c.train.log_every_steps = 50
  c.train.checkpoint_every_steps = 1000
  c.search.num_images = 10000
  c.search.batch_size = 256
  c.search.calib_batch = 256
  if preset == 'dna':
    # DNA's own space (6 stages, 6 candidates, no shortcut on downsampling
    # layers) and settings; the teacher: --config.distill.teacher=DIR
    c.space.layout = 'dna'
    defaults.dna_official(c)
    c.augment.ops = 'rrc,flip,color'
    # the 23 benchmark networks are of the BossNAS layout
    c.search.archs_file = c.search.truth_file = ''
  elif preset:
    raise ValueError(f'unknown preset {preset!r}: mbconv_imagenet.py has '
                     ':dna; configs/mbconv_cifar.py runs on CIFAR')
  return c
