r"""AutoFormer on CIFAR-10: a small ViT space at 32x32 with 4x4 patches
(64 patches + the class token), the DeiT recipe, then the evolution; the
embedded real CIFAR-10 images by default, 100 per class held out as the
search's validation set.

  python -m bossnax.main --config=configs/autoformer_cifar.py --workdir=DIR
  python -m bossnax.main --config=configs/autoformer_cifar.py:quick --workdir=DIR
      # the whole pipeline in CPU minutes: train, evolve, export the best
  python -m bossnax.main --config=configs/autoformer_cifar.py:tiny --workdir=DIR
      # the test preset

The space: embedding 128 / 160 / 192, depth 6 / 7 / 8, MLP ratio 3 / 3.5 /
4, 2 or 3 heads of 64 per layer (6.0e6 subnets, 1.05-3.64 M parameters).
"""

from bossnax import defaults


def get_config(preset: str = ''):
  opts = [p.strip() for p in preset.split(',') if p.strip()]
  unknown = [p for p in opts if p not in ('quick', 'tiny', 'paper_mutation')]
  if unknown or ('quick' in opts and 'tiny' in opts):
    raise ValueError(f'unknown preset {preset!r}: use autoformer_cifar.py'
                     '[:quick|:tiny][,paper_mutation]')
  c = defaults.vit_base('T')
  c.space.update(dict(embed_dims=(128, 160, 192), depths=(6, 7, 8),
                      mlp_ratios=(3.0, 3.5, 4.0), heads=(2, 3),
                      image_size=32, patch_size=4, num_classes=10))
  defaults.cifar10_search_data(c)
  c.data.holdout_per_class = 100
  defaults.autoformer_recipe(
      c, 'paper' if 'paper_mutation' in opts else 'code')
  c.augment.ops = 'crop_flip,randaug,erase'  # CIFAR's crops at 32 px
  c.train.batch_size = 256
  c.train.epochs_per_block = 300
  c.train.warmup_epochs = 5.0
  c.search.batch_size = 250
  c.search.num_images = 0  # the 1,000 held out
  c.search.path_chunk = 4
  if 'quick' in opts:
    _quick(c)
  elif 'tiny' in opts:
    _quick(c)
    _tiny(c)
  return c


def _quick(c):
  """A minute on a 2-core CPU: 16x16 images, 4x4 patches, a narrow space
  (embedding 32 / 48 / 64, depth 2-4, heads of 16), 512 training images and
  100 held out, 30 epochs at lr 1e-3, an evolution of 10 + 4 generations; the
  entanglement, the recipe, the evolution and the export are the real
  ones."""
  c.space.update(dict(embed_dims=(32, 48, 64), depths=(2, 3, 4),
                      mlp_ratios=(2.0, 3.0, 4.0), heads=(1, 2),
                      head_dim=16, image_size=16, max_rel_pos=4))
  c.data.train_images = 612
  c.data.holdout_per_class = 10
  c.data.image_size = 16
  c.augment.pad = 2
  c.train.batch_size = 32
  # 16 steps an epoch: the recipe's lr would be 3e-5 at batch 32, too
  # little for a few hundred steps; the quick preset keeps 1e-3
  c.train.lr, c.train.lr_scaling = 1e-3, 'none'
  c.train.epochs_per_block = 30
  c.train.warmup_epochs = 2.0
  c.train.log_every_steps = 40
  c.train.checkpoint_every_steps = 160
  e = c.search.evolution
  e.population, e.generations, e.parents = 10, 4, 4
  e.mutations, e.crossovers = 5, 5
  c.search.evaluations = e.population * (e.generations + 1)
  c.search.batch_size = 50
  c.search.calib_batch = 16
  c.search.path_chunk = 10


def _tiny(c):
  """Seconds, for tests: 8x8 images, 2x2 patches, depth 1-2, 64 training
  images, one epoch, an evolution of 6 x 2 generations; no RandAugment
  (its compilation would double the test's; tests/test_randaugment.py
  checks it) and no repeated augmentation (tests/test_data.py)."""
  c.space.update(dict(embed_dims=(8, 16), depths=(1, 2),
                      mlp_ratios=(1.0, 2.0), heads=(1, 2), head_dim=8,
                      image_size=8, patch_size=2, max_rel_pos=2))
  c.data.train_images = 84
  c.data.holdout_per_class = 2
  c.data.image_size = 8
  c.augment.pad = 1
  c.augment.ops = 'crop_flip,erase'
  c.train.repeated_aug = 1
  c.train.batch_size = 16
  c.train.epochs_per_block = 1
  c.train.warmup_epochs = 0.25
  c.train.log_every_steps = 1
  c.train.checkpoint_every_steps = 2
  e = c.search.evolution
  e.population, e.generations, e.parents = 6, 2, 3
  e.mutations, e.crossovers = 3, 3
  c.search.evaluations = e.population * (e.generations + 1)
  c.search.batch_size = 20
  c.search.path_chunk = 6
