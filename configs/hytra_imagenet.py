r"""BossNAS on the HyTra fabric, ImageNet (the paper's search).

The official schedule: effective batch 4096 (64 per GPU x 8 GPUs x 8
accumulation steps), LARS lr 4.8 at 4096, 4 paths per step, 6 epochs per
block, 4 blocks; BYOL's two asymmetric augmentation pipelines.

  python -m bossnax.main --config=configs/hytra_imagenet.py --workdir=DIR \
      --config.data.data_dir=/path/to/tensorflow_datasets

imagenet2012 needs your own archives: put ILSVRC2012_img_train.tar and
ILSVRC2012_img_val.tar in DATA_DIR/downloads/manual/ and prepare it once with
tfds.builder('imagenet2012', data_dir=DATA_DIR,
file_format='array_record').download_and_prepare(). The search space has
2,777,600 architectures: the run writes the best path of every block to
ranking.json (no scores.csv). As in the paper, 50 images per class (50,000)
are held out of the training set for the search (data.holdout_per_class;
with tfds the labels are read once, minutes); the validation view pairs
come from the first search.num_images of them, and ImageNet's validation
split stays for reporting. An ImageNet folder instead of tfds:
--config.data.source=folder --config.data.path=DIR --config.data.workers=N.
"""

from bossnax import defaults


def get_config(preset: str = ''):
  c = defaults.hytra_base()
  c.dtype = 'bfloat16'  # the official run used fp16 (apex)
  defaults.imagenet_search_data(c)
  c.train.batch_size = 512
  c.train.accum_steps = 8
  c.train.lr = 4.8
  c.train.lr_batch = 4096
  c.train.weight_decay = 1e-6
  c.train.warmup_epochs = 1.0
  c.train.epochs_per_block = 6
  c.train.log_every_steps = 50
  c.train.checkpoint_every_steps = 1000
  c.search.num_images = 10000
  c.search.batch_size = 256
  c.search.calib_batch = 256
  if preset:
    raise ValueError(f'unknown preset {preset!r}: hytra_imagenet.py has '
                     'none; configs/hytra_cifar.py runs on CIFAR')
  return c
