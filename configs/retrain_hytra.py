r"""Train one architecture from scratch with labels (a DeiT-like recipe).

ImageNet, 300 epochs, AdamW lr 1e-3 per 1024 images, wd 0.05, 5 warm-up
epochs then cosine to 1e-5, label smoothing 0.1, mixup 0.8 / cutmix 1.0:

  python -m bossnax.retrain --config=configs/retrain_hytra.py \
      --config.arch=BossNet-T0 --config.data.data_dir=/data/tfds --workdir=DIR

Presets: ':cifar' (the embedded real CIFAR-10 subset, 32x32, 10 classes),
':tiny' (seconds on a CPU, for tests; a tiny NATS net for now), ':nats' and
':nats_quick' (the widest NATS network, DNA's teacher on NATS: 32x32, or 16x16
as configs/nats_cifar10.py:quick searches; docs/methods.md),
':mbconv_quick_teacher', ':mbconv_tiny_teacher', ':hytra_tiny_teacher' (the
same for the CPU presets of those spaces).
"""

import ml_collections

from bossnax import defaults


def get_config(preset: str = ''):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.dtype = 'float32'  # 'bfloat16': bf16 compute, f32 params and optimiser
  c.num_devices = 0  # 0 = all devices
  c.compilation_cache_dir = ''  # persistent XLA cache; '' = off
  # A name of the space (BossNet-T0, ResNet50-T, ...) or its string form
  # (hytra: stage lists like [[1],[1],[1,1,1,0,1],[0,0,0,1,0,0,0,0,0]];
  # nats: c0:c1:c2:c3:c4).
  c.arch = 'BossNet-T0'
  # A spec.json written by `python -m bossnax.export` (its space and arch
  # replace the two fields above), and optionally its weights folder to
  # start from the supernet's weights instead of a random init.
  c.spec = ''
  c.init_weights = ''

  # Every field but `name` goes to the space's constructor (make_space).
  c.space = ml_collections.ConfigDict()
  c.space.name = 'hytra'
  c.space.num_classes = 1000

  c.data = defaults.data_config()
  c.data.source = 'tfds'
  c.data.name = 'imagenet2012'
  c.data.image_size = 224
  c.data.test_split = 'validation'

  c.augment = ml_collections.ConfigDict()
  # ops of bossnax/data/augment.py, in order: DeiT's views
  c.augment.ops = 'rrc,flip,randaug,erase'
  c.augment.randaug = 'rand-m9-mstd0.5-inc1'  # timm's string, DeiT's
  c.augment.erase_prob = 0.25
  c.augment.pad = 4  # for 'crop_flip'
  c.augment.mean = defaults.IMAGENET_MEAN
  c.augment.std = defaults.IMAGENET_STD

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 1024  # global
  c.train.epochs = 300
  c.train.repeated_aug = 3  # DeiT's: batch/3 images, 3 times each
  c.train.lr = 1e-3  # AdamW peak lr per 1024 images: lr * batch_size / 1024
  c.train.weight_decay = 0.05  # not on biases and norm parameters
  c.train.warmup_epochs = 5.0
  c.train.min_lr = 1e-5  # end of the cosine decay
  c.train.label_smoothing = 0.1
  c.train.grad_clip = 0.0  # global-norm clipping; 0 = off
  # True: train the classifier only, the network frozen with its BN
  # statistics (a linear probe of exported weights, e.g. DATA's subnet)
  c.train.linear_probe = False
  # EMA of the weights, evaluated beside them; on in the official retraining
  # (DeiT's 0.99996); 0 = off
  c.train.ema_decay = 0.99996
  c.train.mixup_alpha = 0.8  # 0 = no mixup
  c.train.cutmix_alpha = 1.0  # 0 = no cutmix
  c.train.mix_switch_prob = 0.5  # cutmix instead of mixup when both are on
  c.train.mix_prob = 1.0  # probability a batch is mixed at all
  c.train.log_every_steps = 100
  c.train.eval_every_epochs = 10  # the last epoch is always evaluated
  c.train.checkpoint_every_steps = 2000
  c.train.keep_checkpoints = 3

  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 1000  # global; the last batch is padded (weight 0)
  c.eval.num_images = 0  # first N test images, 0 = all

  c.distributed = ml_collections.ConfigDict()
  c.distributed.mode = 'auto'  # 'auto' | 'on' | 'off'
  c.distributed.coordinator_address = ''
  c.distributed.num_processes = -1
  c.distributed.process_id = -1
  c.distributed.cpu_collectives = ''

  if preset:  # CIFAR-sized recipes: no repeated augmentation, no weight EMA
    c.train.repeated_aug, c.train.ema_decay = 1, 0.0
  if preset == 'cifar':
    _cifar(c)
  elif preset == 'tiny':
    _tiny(c)
  elif preset == 'tiny_hytra':
    _tiny(c)
    c.space = ml_collections.ConfigDict({
        'name': 'hytra', 'num_classes': 10, 'stem': 'cifar',
        'base_width': 4, 'heads': (1, 2)})
    c.arch = 'BossNet-T0'
    c.data.image_size = 16
  elif preset in ('nats', 'nats_quick'):
    _nats_teacher(c, quick=preset == 'nats_quick')
  elif preset in TEACHERS:
    _teacher_of(c, *TEACHERS[preset])
  elif preset:
    raise ValueError(f'unknown preset {preset!r}: use retrain_hytra.py:cifar, '
                     ':tiny, :tiny_hytra, :nats, :nats_quick, '
                     f':{", :".join(TEACHERS)}')
  return c


def _cifar(c):
  """The embedded real CIFAR-10 subset (2,000 train / 500 test images,
  shipped in the package); --config.data.source=tfds --config.data.name=
  cifar10 gives the whole dataset."""
  c.space.num_classes = 10
  c.space.stem = 'cifar'  # 3x3 stride-1 stem: scales 32, 16, 8, 4 px
  c.space.base_width = 16
  c.space.heads = (2, 4)
  c.data.source = 'embedded'
  c.data.name = 'cifar10'
  c.data.image_size = 32
  c.data.test_split = 'test'
  c.augment.ops = 'crop_flip'
  c.augment.mean = defaults.CIFAR10_MEAN
  c.augment.std = defaults.CIFAR10_STD
  c.train.batch_size = 128
  c.train.epochs = 100
  c.train.log_every_steps = 15
  c.train.eval_every_epochs = 10
  c.train.checkpoint_every_steps = 300
  c.eval.batch_size = 500


def _tiny(c):
  """Seconds on a 2-core CPU, for tests: 256 images, 2 epochs of 4 steps."""
  _cifar(c)
  # A tiny NATS net keeps the tests' compile time low; :tiny_hytra is the
  # same with a narrow BossNet-T0.
  c.space = ml_collections.ConfigDict({'name': 'nats', 'num_classes': 10})
  c.arch = '8:8:16:16:16'
  c.data.train_images = 256
  c.train.batch_size = 64
  c.train.epochs = 2
  c.train.warmup_epochs = 0.5
  c.train.ema_decay = 0.9  # exercise the EMA evaluation
  c.train.log_every_steps = 2
  c.train.eval_every_epochs = 1
  c.train.checkpoint_every_steps = 3
  c.eval.batch_size = 128


# method=dna teachers for the CPU presets of the other spaces: (the search
# preset's space, its image size, an architecture with the supernet's full
# widths at the block boundaries); on hytra the teacher's block-end scales
# become the search's space.block_ends (docs/methods.md).
_MBCONV_QUICK = {'name': 'mbconv', 'layout': 'bossnas', 'num_classes': 10,
                 'cifar_stem': True, 'stage_layers': (1, 1, 1, 1, 1),
                 'stage_widths': (8, 16, 24, 32, 48)}
TEACHERS = {  # as configs/mbconv_cifar.py:quick, :tiny, hytra_cifar.py:tiny
    'mbconv_quick_teacher': (_MBCONV_QUICK, 16, '1|1|1|1|1'),
    'mbconv_tiny_teacher': (dict(_MBCONV_QUICK, stage_widths=(8,) * 5), 16,
                            '1|1|1|1|1'),
    'hytra_tiny_teacher': ({'name': 'hytra', 'num_classes': 10,
                            'stem': 'cifar', 'base_width': 4,
                            'heads': (1, 2), 'depth': 1}, 16,
                           '[[],[],[1],[1,1,1]]'),
}


def _teacher_of(c, space, image_size, arch):
  """Train `arch` of `space` at `image_size` on the embedded CIFAR-10
  subset (512 images, 5 epochs): a CPU minute or two."""
  _cifar(c)
  c.space = ml_collections.ConfigDict(space)
  c.arch = arch
  c.augment.ops = 'crop_flip'
  c.data.image_size = image_size
  c.data.train_images = 512
  c.train.batch_size = 32
  c.train.epochs = 5
  c.train.warmup_epochs = 0.5
  c.train.mixup_alpha = 0.0
  c.train.cutmix_alpha = 0.0
  c.train.log_every_steps = 4
  c.train.eval_every_epochs = 5
  c.eval.batch_size = 500


def _nats_teacher(c, quick):
  """The widest NATS-Bench network (64:64:64:64:64) on the embedded CIFAR-10
  subset: the teacher of method=dna on NATS. ':nats_quick' trains it at the
  16x16 resolution of nats_cifar10.py:quick, on the same 512 images, in
  about a CPU minute."""
  _cifar(c)
  c.space = ml_collections.ConfigDict({'name': 'nats', 'num_classes': 10})
  c.arch = '64:64:64:64:64'
  c.augment.ops = 'crop_flip'  # the search's views
  c.train.batch_size = 128
  c.train.epochs = 30
  c.train.warmup_epochs = 1.0
  c.train.mixup_alpha = 0.0
  c.train.cutmix_alpha = 0.0
  c.train.log_every_steps = 10
  c.train.eval_every_epochs = 5
  c.eval.batch_size = 500
  if quick:
    c.data.image_size = 16
    c.data.train_images = 512
    c.train.batch_size = 32
    c.train.epochs = 20
    c.train.eval_every_epochs = 10
