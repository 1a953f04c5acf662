"""What the config files share: dataset statistics, the schema of a search
run, the NATS presets and the HyTra base.

Config files (configs/*.py) are loaded from a path by
bossnax.config.load_config_file; they import this module instead of loading
one another, so every search config starts from one schema and a preset is
written once.
"""

import ml_collections

# Per-channel mean and std of the training images (0-1 pixels).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def data_config() -> ml_collections.ConfigDict:
  """The data keys of every run (bossnax/data/sources.py; README "Data")."""
  d = ml_collections.ConfigDict()
  # 'embedded' | 'npz' | 'archive' | 'folder' | 'tfds' | 'synthetic' (noise)
  d.source = 'embedded'
  d.name = 'cifar10'  # cifar10 | cifar100 | imagenet2012 (tfds, synthetic)
  d.path = ''  # npz file, CIFAR archive or image folder
  d.data_dir = ''  # tfds: where prepared datasets live ('' = tfds's default)
  d.manual_dir = ''  # tfds: archives you downloaded yourself
  d.download = True  # tfds: download and prepare when not prepared
  d.train_split = 'train'  # tfds split names
  d.test_split = 'test'
  d.labels = 'fine'  # CIFAR-100: 'fine' (100 classes) | 'coarse' (20)
  d.image_size = 32  # square side fed to the net (resized on host)
  d.train_images = 0  # use the first N training images, 0 = all
  # The search's validation images (at most one of the three; none: the
  # test split): NATS-Bench's split, N per class or a fraction held out of
  # the training set (data/splits.py).
  d.nats_split = False
  d.holdout_per_class = 0
  d.holdout_fraction = 0.0
  # Folder / tfds ImageNet host crop of training images: 'resize' (views
  # from device augmentations) | 'rrc' (random resized crop on the host)
  d.train_crop = 'resize'
  d.workers = 0  # grain worker processes decoding batches (folder, tfds)
  return d


def search_config() -> ml_collections.ConfigDict:
  """Every key of a search run (one schema for all spaces and datasets),
  with the NATS-Bench CIFAR-10 paper defaults."""
  c = ml_collections.ConfigDict()
  # The training method (bossnax/methods/, docs/methods.md): bossnas |
  # single_path | supervised | dna | supervised_oneshot | greedynas |
  # autoformer | data
  c.method = 'bossnas'
  c.seed = 0
  c.dtype = 'float32'  # 'bfloat16': bf16 compute, f32 params and optimiser
  c.num_devices = 0  # 0 = all devices
  c.compilation_cache_dir = ''  # persistent XLA cache; '' = off
  # After the search: export the best architecture with its inherited
  # weights to WORKDIR/best (spec.json, weights/) and evaluate that
  # standalone network on the test split, no retraining (best/eval.json).
  c.export_best = False

  c.space = ml_collections.ConfigDict()
  c.space.name = 'nats'
  c.space.block_split = 'cifar10'  # official (c0,c1)(c2,c3)(c4); or '0,1|2,3|4'
  c.space.num_classes = 10  # only the classifier's cost depends on it
  c.space.widths = (8, 16, 24, 32, 40, 48, 56, 64)  # NATS-Bench's
  # Conv init, bossnax/nn/init.py: 'torch' (PyTorch's default, as the
  # official supernet) | 'he_fan_out' (bossnax before 2026-12-02).
  c.space.conv_init = 'torch'
  # ReLU before the cells' 1x1 projection skip: False as NATS-Bench's
  # networks, True as the official BossNAS supernet (docs/architecture.md).
  c.space.skip_relu = False

  c.model = ml_collections.ConfigDict()
  c.model.embed_dim = 2048  # width adapters' output, before the projector
  c.model.proj_hidden = 4096
  c.model.proj_dim = 256
  c.model.pred_hidden = 4096

  c.data = data_config()

  # method=dna: the frozen teacher (an exported spec.json + weights/, or a
  # finished bossnax.retrain workdir) and the student's projection to its
  # widths: 'auto' (where widths differ or are searched) | 'conv' | 'none'.
  c.distill = ml_collections.ConfigDict()
  c.distill.teacher = ''
  c.distill.projection = 'auto'

  c.augment = ml_collections.ConfigDict()
  c.augment.ops = 'crop_flip'  # official NATS views; BYOL: 'rrc,flip,color,gray,blur,solarize'
  c.augment.pad = 4
  c.augment.mean = CIFAR10_MEAN
  c.augment.std = CIFAR10_STD
  c.augment.blur_prob = (1.0, 0.1)
  c.augment.solarize_prob = (0.0, 0.2)
  c.augment.erase_prob = 0.25  # op 'erase' (random erasing), last in ops
  c.augment.rrc_scale = (0.08, 1.0)  # op 'rrc': area range (MoCo v2: 0.2-1)
  # op 'color': brightness, contrast, saturation, hue (BYOL's; MoCo v2's
  # saturation is 0.4)
  c.augment.jitter = (0.4, 0.4, 0.2, 0.1)
  # op 'randaug': timm's RandAugment string (DeiT / AutoFormer's default)
  c.augment.randaug = 'rand-m9-mstd0.5-inc1'

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 1024  # global batch of one micro-step
  c.train.accum_steps = 4  # effective batch = batch_size * accum_steps
  c.train.optimizer = 'lars'  # lars | sgd | adamw | adam (L2 decay, DNA's)
  c.train.adam_eps = 1e-8
  c.train.lr = 0.48  # LARS lr at lr_batch, scaled by lr_scaling
  c.train.block_lr = ()  # one lr per block replacing train.lr (DNA's), () = none
  # 'cosine' (warm-up then cosine to 0 over the block) | 'exponential'
  # (x lr_decay_rate per epoch, stepwise: DNA's)
  c.train.schedule = 'cosine'
  c.train.lr_decay_rate = 0.9
  c.train.lr_batch = 4096
  c.train.lr_scaling = 'linear'  # to the effective batch: linear | sqrt | none
  # > 0: the sum of a block's learning rates instead (sets the peak; under
  # LARS a weight's travel follows it); official_lr_sum() is the paper's.
  c.train.lr_sum = 0.0
  # LARS: a trust ratio per width of the stacked width adapters, as the
  # official code's separate convs have (False: one for the whole stack).
  c.train.lars_per_row = True
  c.train.momentum = 0.9
  c.train.weight_decay = 1e-6
  c.train.eta = 0.001  # LARS trust coefficient
  c.train.warmup_epochs = 2.0
  c.train.epochs_per_block = 50
  c.train.paths_per_step = 8
  c.train.fair = True  # every width of every layer once per step
  c.train.path_chunk = 0  # online paths run side by side per chunk; 0 = all
  # G > 1: the K sampled paths take the block's first layer from G width
  # buckets, K/G each (stratified), and each group runs in a supernet
  # narrowed to its bucket (bossnax/width_groups.py); 1 = all at full width.
  c.train.width_groups = 1
  # (a smaller chunk bounds activation memory: 8 paths x 256 images of the
  # widest net need ~70 GB at once)
  c.train.remat = False  # recompute activations in the backward pass
  c.train.cache_prefix = True  # finished blocks' output once per step, not per path
  c.train.views_per_path = False  # True: each path gets its own view pair
  c.train.ema_base = 0.99
  c.train.label_smoothing = 0.0  # method=supervised: its cross-entropy's
  # Batch mixing of the supervised objectives' training view (the DeiT
  # recipe's mixup 0.8 / cutmix 1.0; 0 = off), soft targets.
  c.train.mixup_alpha = 0.0
  c.train.cutmix_alpha = 0.0
  c.train.mix_switch_prob = 0.5  # cutmix instead of mixup when both are on
  c.train.mix_prob = 1.0  # probability a batch is mixed at all
  # cosine schedule: the warm-up starts at warmup_lr, the decay ends at
  # min_lr (DeiT's 1e-6 and 1e-5; 0 and 0 otherwise)
  c.train.warmup_lr = 0.0
  c.train.min_lr = 0.0
  c.train.log_every_steps = 20
  c.train.checkpoint_every_steps = 200
  # DeiT's repeated augmentation: each batch holds batch/r images r times
  # (data/pipeline.py); 1 = off
  c.train.repeated_aug = 1
  c.train.keep_checkpoints = 3

  c.search = ml_collections.ConfigDict()
  c.search.num_images = 0  # validation images (test split), 0 = all
  c.search.batch_size = 256
  c.search.path_chunk = 16  # paths evaluated side by side (bounds memory)
  # Width buckets per layer: each group of paths runs in a supernet narrowed
  # to its bucket's widths (less masked work, one more subprogram per group
  # to compile); 1 = every path at full width.
  c.search.width_groups = 1
  c.search.view_pairs = 1  # fixed view pairs per validation image (paper: 1)
  c.search.recalibrate_bn = True
  # The predictor's BN while scoring: 'recalibrate' (with the rest) or
  # 'reset' (mean 0, variance 1, as the official metric is measured).
  c.search.predictor_bn = 'recalibrate'
  c.search.calib_batch = 256  # fixed training batch for BN recalibration
  c.search.centre = 'normalized'  # population centre of 'normalized' | 'raw' projections
  c.search.lambdas = ()  # per-block weights of the architecture score, () = all 1
  c.search.top_n = 1  # best paths of a block that feed the next block
  c.search.flops_budget = 0.0  # in MFLOPs; 0 = none
  c.search.params_budget = 0.0  # in M params; 0 = none
  c.search.flops_budgets = ()  # more MAdds budgets (M): the best under each
  # How architectures are ranked (bossnax/searchers/strategies.py):
  # 'auto' | 'exhaustive' | 'blockwise_budget' | 'evolution' | 'nsga2' |
  # 'random'; the whole-architecture ones spend search.evaluations per
  # budget inside the band [min_flops, min_params] .. the budget.
  c.search.strategy = 'auto'
  c.search.evaluations = 1000
  c.search.min_flops = 0.0  # MAdds, M
  c.search.min_params = 0.0  # M
  # Measured latency (searchers/latency.py; evolution, nsga2, random only):
  # a limit in ms of a forward pass of latency_batch images on this device,
  # and nsga2's second objective: 'flops' | 'params' | 'latency'
  c.search.latency_budget = 0.0
  c.search.latency_batch = 1
  c.search.objective = 'flops'
  c.search.evolution = ml_collections.ConfigDict()  # SPOS / AutoFormer
  c.search.evolution.population = 50
  c.search.evolution.generations = 20
  c.search.evolution.parents = 10
  c.search.evolution.mutations = 25
  c.search.evolution.crossovers = 25
  c.search.evolution.mutation_prob = 0.1  # per gene (SPOS)
  # structure genes (the vit space's depth and embedding width): AutoFormer
  c.search.evolution.structure_prob = 0.4
  # Spaces too large to enumerate: score the architectures of this file
  # (e.g. the MBConv 23-architecture benchmark) and the best found.
  c.search.archs_file = ''
  c.search.num_archs = 0  # one-shot methods: N candidates evenly spaced in the list, 0 = all
  c.search.truth_file = ''  # CSV with arch + accuracy: correlations at the end
  c.search.top_k = 10  # architectures printed and written to ranking.json
  c.search.seed = 1234  # fixes the validation view pairs; seeds the searchers
  # How a block's paths are scored: 'objective' (the method's own score:
  # BossNAS's population centre) | 'linear' (supervised linear evaluation:
  # the supernet frozen, one linear classifier per block trained over
  # sampled paths, validation cross-entropy; bossnax/engine/linear_probe.py)
  c.search.evaluator = 'objective'
  # method=data's selection (search.evaluator 'objective' or its own name
  # 'similarity_to_largest'): distance of a subnet's projection to the
  # largest network's, bossnax/objectives/similarity.py: cosine | mse |
  # relation | gram_mse | gram_cosine | gram_kl
  c.search.similarity = 'cosine'
  c.search.similarity_temperature = 0.2  # relation and gram_kl
  # What a whole-architecture search (one-shot methods) minimises: 'loss'
  # (the objective's validation loss) | 'error' (top-1 error, classifiers)
  c.search.fitness = 'loss'
  c.search.linear_steps = 100  # steps of the linear classifier per block
  c.search.linear_optimizer = 'sgd'  # with train.momentum, no weight decay
  c.search.linear_lr = 0.1  # constant after no warm-up, cosine to 0

  # method=greedynas (bossnax/methods/greedynas.py, docs/greedynas.md): each
  # round scores `sample` paths on `val_images` fixed validation images with
  # the current weights, the `keep` best train (train.paths_per_step per
  # step) and enter a pool of `pool_size`; a candidate comes from the pool
  # with probability epsilon, 0 -> epsilon_final over the training.
  c.greedy = ml_collections.ConfigDict()
  c.greedy.sample = 10  # m
  c.greedy.keep = 5  # k
  c.greedy.pool_size = 1000  # n
  c.greedy.val_images = 1000  # the fixed subset of the validation split
  c.greedy.calib_batch = 0  # BN recalibration images; 0 = search.calib_batch
  c.greedy.score = 'loss'  # 'loss' (the paper's) | 'error' (top-1)
  c.greedy.epsilon_final = 0.8
  c.greedy.epsilon_schedule = 'linear'  # | 'cosine'
  c.greedy.max_flops = 0.0  # MAdds (M) of a fresh candidate; 0 = none
  # Early stop: when the pool is full and less than `alpha` of it was
  # replaced since the previous check (every check_every_steps; 0 = an
  # epoch); alpha 0 = train every step.
  c.greedy.early_stop_alpha = 0.08
  c.greedy.check_every_steps = 0

  # method=data (bossnax/methods/data.py, docs/data.md): MoCo v2 on the
  # supernet, the key encoder the EMA of the supernet at its largest
  # architecture; train.paths_per_step = 2 + the random subnets of the
  # sandwich.
  c.moco = ml_collections.ConfigDict()
  c.moco.loss = 'moco'  # 'moco' (queue, InfoNCE) | 'byol' (predictor)
  c.moco.queue_size = 65536
  c.moco.feat_dim = 128
  c.moco.neck_hidden = 2048
  c.moco.pred_hidden = 4096  # loss='byol' only
  c.moco.temperature = 0.2
  c.moco.momentum = 0.999  # key encoder EMA, constant

  c.distributed = ml_collections.ConfigDict()
  c.distributed.mode = 'auto'  # 'auto' | 'on' | 'off'
  c.distributed.coordinator_address = ''
  c.distributed.num_processes = -1
  c.distributed.process_id = -1
  c.distributed.cpu_collectives = ''  # 'gloo' for multi-process CPU runs
  return c


# -- NATS presets (configs/nats_cifar10.py and nats_cifar100.py) ---------------

# The official NATS schedule: 50 epochs per block of the 50,000 CIFAR
# training images at batch 4096 (12 steps an epoch, last partial batch
# dropped), 2 warm-up epochs, LARS lr 0.48.
OFFICIAL_NATS_SCHEDULE = {'images': 50_000, 'batch': 4096, 'epochs': 50,
                          'warmup_epochs': 2, 'lr': 0.48}


def official_lr_sum(schedule=OFFICIAL_NATS_SCHEDULE) -> float:
  """The sum of the official schedule's learning rates over one block."""
  import numpy as np
  import optax
  steps = schedule['images'] // schedule['batch']
  total = schedule['epochs'] * steps
  lr = optax.warmup_cosine_decay_schedule(
      0.0, schedule['lr'], schedule['warmup_epochs'] * steps, total, 0.0)
  return float(np.sum(np.asarray(lr(np.arange(total)))))


def nats_quick(c):
  """Minutes on a 2-core CPU, same code path, real NATS widths. Masked
  channels compute at full width (every path costs the widest net), so this
  preset trains and searches on 16x16 images (the cost model still describes
  the 32x32 networks of NATS-Bench) with a small budget: a smoke run of the
  whole pipeline, not a meaningful search."""
  c.model.embed_dim = 128
  c.model.proj_hidden = 256
  c.model.proj_dim = 64
  c.model.pred_hidden = 256
  c.data.train_images = 512
  c.data.image_size = 16
  c.train.batch_size = 32
  c.train.accum_steps = 1
  c.train.epochs_per_block = 1
  c.train.warmup_epochs = 0.1
  c.train.paths_per_step = 2
  c.train.fair = False
  c.train.log_every_steps = 2
  c.train.checkpoint_every_steps = 8
  c.search.num_images = 32
  c.search.batch_size = 32
  c.search.calib_batch = 16
  c.search.path_chunk = 64
  c.search.truth_file = '../shared/benchmarks/nats_sss_cifar10_sample2048.csv'


def nats_real(c):
  """The real-data run of docs/results.md: the paper's networks, heads and
  8 fair paths on the 5,085 real CIFAR-10 training images of ../shared (one
  GPU, minutes); the 1,017 test images give the validation view pairs."""
  c.data.source = 'npz'
  c.data.path = '../shared/data/cifar10_real_subset.npz'
  c.train.batch_size = 256
  c.train.accum_steps = 1
  c.train.epochs_per_block = 50
  c.train.warmup_epochs = 2.0
  c.train.log_every_steps = 19
  c.train.checkpoint_every_steps = 400
  c.search.batch_size = 256
  c.search.calib_batch = 256
  c.search.truth_file = '../shared/benchmarks/nats_sss_cifar10_sample2048.csv'


def nats_tiny(c):
  """Seconds per block, for tests: widths 4 and 8 (4 paths per block)."""
  nats_quick(c)
  c.space.widths = (4, 8)
  c.model.embed_dim = 16
  c.model.proj_hidden = 32
  c.model.proj_dim = 16
  c.model.pred_hidden = 32
  c.data.train_images = 48
  c.data.image_size = 32
  c.train.batch_size = 16
  c.train.paths_per_step = 2
  c.train.checkpoint_every_steps = 2
  c.train.log_every_steps = 1
  c.search.num_images = 32
  c.search.batch_size = 16
  c.search.calib_batch = 16
  c.search.path_chunk = 4
  c.search.truth_file = ''


def nats_real_budget(c):
  """nats_real with the official optimisation budget: the learning rates of
  a block sum to the official schedule's (official_lr_sum, 144.0), over
  this subset's 950 steps (linear scaling gives a tenth of it)."""
  nats_real(c)
  c.train.lr_sum = round(official_lr_sum(), 1)


NATS_PRESETS = {'quick': nats_quick, 'real': nats_real,
                'real_budget': nats_real_budget, 'tiny': nats_tiny}


# -- HyTra (configs/hytra_imagenet.py and hytra_cifar.py) ----------------------

def hytra_base():
  """Every key of the search schema, HyTra values (the paper's widths and
  1000 classes; the config files set data and schedule)."""
  c = search_config()
  space = {'name': 'hytra', 'num_classes': 1000, 'restricted': True,
           'base_width': 64, 'heads': (4, 8), 'stem': 'imagenet',
           'last_stride': 2, 'depth': 4,
           # a stage (0..3) per block to end at, () = free; method=dna
           # sets its teacher's (docs/methods.md)
           'block_ends': ()}
  c.space = type(c.space)(space)
  c.model.embed_dim = 2048  # every block's adapter ends at the 1/32 width
  c.model.proj_hidden = 4096
  c.model.proj_dim = 256
  c.model.pred_hidden = 4096
  c.train.fair = False  # constrained blocks: uniform over valid paths
  c.train.paths_per_step = 4
  c.train.cache_prefix = True
  c.search.path_chunk = 1  # paths switch branches: one after another
  c.search.truth_file = ''
  return c


# -- the data of the HyTra and MBConv configs ------------------------------------

def imagenet_search_data(c):
  """ImageNet as the paper searches it: tfds imagenet2012 at 224 px, 50
  images per class held out of the training set for the search, BYOL's
  augmentations."""
  c.data.source = 'tfds'
  c.data.name = 'imagenet2012'
  c.data.image_size = 224
  c.data.test_split = 'validation'
  c.data.holdout_per_class = 50
  c.augment.ops = 'rrc,flip,color,gray,blur,solarize'
  c.augment.mean = IMAGENET_MEAN
  c.augment.std = IMAGENET_STD


def cifar10_search_data(c):
  """The embedded real CIFAR-10 images at 32 px with the NATS views."""
  c.data.source = 'embedded'
  c.data.name = 'cifar10'
  c.data.image_size = 32
  c.augment.ops = 'crop_flip'
  c.augment.mean = CIFAR10_MEAN
  c.augment.std = CIFAR10_STD


# -- MBConv (configs/mbconv_imagenet.py and mbconv_cifar.py) -------------------

MBCONV_BENCHMARK = '../shared/benchmarks/mbconv_23_archs_imagenet.json'


def mbconv_base():
  """Every key of the search schema, MBConv values: the official ImageNet
  search (LARS 4.8 at 4096 = 64 x 8 devices x 8 accumulation steps, 4 fair
  paths, each with its own view pair, 6 epochs per block, EMA 0.99 -> 1;
  each block's neck takes its pooled output, 24 / 40 / 80 / 112 / 192
  wide)."""
  c = search_config()
  space = {'name': 'mbconv', 'layout': 'bossnas', 'num_classes': 1000,
           'cifar_stem': False, 'stage_layers': (), 'stage_widths': ()}
  c.space = type(c.space)(space)
  c.model.proj_hidden = 4096
  c.model.proj_dim = 256
  c.model.pred_hidden = 4096
  c.train.paths_per_step = 4
  c.train.fair = True  # every candidate of every layer once per step
  c.train.views_per_path = True
  c.train.lr = 4.8
  c.train.lr_batch = 4096
  c.train.batch_size = 512
  c.train.accum_steps = 8
  c.train.epochs_per_block = 6
  c.train.warmup_epochs = 1.0
  c.train.cache_prefix = True
  c.search.path_chunk = 1  # paths switch candidates: one after another
  c.search.archs_file = MBCONV_BENCHMARK  # scores.csv: these 23 + the best
  c.search.truth_file = MBCONV_BENCHMARK
  return c


# -- GreedyNAS (method=greedynas; configs/greedynas_*.py) ---------------------

def greedynas_recipe(c):
  """GreedyNAS's supernet training and search settings (the paper's
  ImageNet recipe): SGD momentum 0.9, lr 0.12 at batch 1024 scaled
  linearly, weight decay 4e-5, cosine to 0 without warm-up, label smoothing
  0.1, one path per step; m = 10 candidates,
  k = 5 kept, a pool of 1,000, epsilon 0 -> 0.8, early stop at alpha 0.08;
  the search: evolution (population 50, 20 generations) from the pool, the
  whole network's validation loss as fitness."""
  t = c.train
  t.optimizer, t.lr, t.lr_batch, t.lr_scaling = 'sgd', 0.12, 1024, 'linear'
  t.momentum, t.weight_decay = 0.9, 4e-5
  t.schedule, t.warmup_epochs = 'cosine', 0.0
  t.label_smoothing = 0.1
  t.paths_per_step, t.fair, t.views_per_path = 1, False, False
  t.accum_steps = 1
  c.search.strategy = 'evolution'
  c.search.evaluations = 1000
  c.search.recalibrate_bn = True


# -- DNA (method=dna) -----------------------------------------------------------

# DNA's search settings, from its official release (changlin31/DNA,
# searching/initialize/train_pipeline.yaml): Adam (eps 1e-8, weight decay
# 1e-4 added to the gradient), one learning rate per stage at batch 64 x 8
# GPUs, x0.9 per epoch (step schedule, no warm-up), 20 epochs per stage,
# uniform single paths, a pool of the 3 best per stage, BN recalibrated
# before evaluation. Their augmentation (timm: colour jitter 0.4, random
# erasing 0.5) is not reproduced: the config's own views are used.
DNA_BLOCK_LR = (0.002, 0.005, 0.005, 0.005, 0.005, 0.002)


def dna_official(c):
  """DNA's optimisation and search settings on config `c` (method=dna)."""
  c.method = 'dna'
  t = c.train
  t.optimizer, t.adam_eps, t.weight_decay = 'adam', 1e-8, 1e-4
  t.lr_batch, t.lr_scaling = 64 * 8, 'linear'
  t.block_lr = DNA_BLOCK_LR
  t.schedule, t.lr_decay_rate, t.warmup_epochs = 'exponential', 0.9, 0.0
  t.epochs_per_block = 20
  t.accum_steps = 1
  t.paths_per_step, t.fair = 1, False
  c.search.top_n = 3
  c.search.recalibrate_bn = True


# -- AutoFormer (method=autoformer; configs/autoformer_*.py) -------------------

def vit_base(layout='T'):
  """Every key of the search schema, with AutoFormer's ViT space (layout
  T, S or B: the official supernets; bossnax/spaces/vit.py) at 224 px."""
  c = search_config()
  space = {'name': 'vit', 'layout': layout, 'embed_dims': (), 'depths': (),
           'mlp_ratios': (), 'heads': (),
           # admissible beyond the searched values (describe, score, export)
           'extra_mlp_ratios': (), 'extra_heads': (),
           # the supernet's maximal sizes; 0 = the layout's
           'super_embed_dim': 0, 'super_mlp_ratio': 0.0, 'super_heads': 0,
           'head_dim': 64, 'image_size': 224, 'patch_size': 16,
           'num_classes': 1000,
           # the official supernets add 2-D relative positions (max
           # distance 14) to the absolute embedding, pool the patch tokens
           # (--gp) and drop paths up to 0.1
           'rel_pos': True, 'max_rel_pos': 14, 'abs_pos': True,
           'pool': 'mean', 'drop_path': 0.1, 'qkv_bias': True}
  c.space = type(c.space)(space)
  return c


# AutoFormer's evolution (microsoft/Cream AutoFormer/evolution.py defaults):
# (per-layer gene probability m_prob, structure gene probability s_prob).
# The issue of this project quotes the paper with the two swapped.
AUTOFORMER_MUTATION = {'code': (0.2, 0.4), 'paper': (0.4, 0.2)}


def autoformer_recipe(c, mutation='code'):
  """AutoFormer's supernet training (the DeiT recipe of the official
  supernet command: AdamW lr 5e-4 per 512 images, weight decay 0.05,
  20 warm-up epochs from 1e-6, cosine to 1e-5, 500 epochs at batch 1024;
  label smoothing 0.1, mixup 0.8 / cutmix 1.0, drop path 0.1, random
  resized crops, flips, RandAugment rand-m9-mstd0.5-inc1, random erasing
  0.25 and repeated augmentation 3; one subnet per step) and
  its evolution (population 50, 20 generations, 10 parents, 25 mutations
  and 25 crossovers a generation; fitness top-1 with inherited weights)."""
  c.method = 'autoformer'
  t = c.train
  t.optimizer, t.adam_eps, t.weight_decay = 'adamw', 1e-8, 0.05
  t.lr, t.lr_batch, t.lr_scaling = 5e-4, 512, 'linear'
  t.schedule, t.warmup_epochs = 'cosine', 20.0
  t.warmup_lr, t.min_lr = 1e-6, 1e-5
  t.label_smoothing = 0.1
  t.mixup_alpha, t.cutmix_alpha = 0.8, 1.0
  t.mix_switch_prob, t.mix_prob = 0.5, 1.0
  t.paths_per_step, t.fair, t.views_per_path = 1, False, False
  t.accum_steps = 1
  t.batch_size = 1024
  t.epochs_per_block = 500
  c.augment.ops = 'rrc,flip,randaug,erase'  # DeiT's views
  t.repeated_aug = 3  # AutoFormer's supernet training (DeiT's sampler)
  c.augment.randaug = 'rand-m9-mstd0.5-inc1'
  c.augment.erase_prob = 0.25
  s = c.search
  s.strategy = 'evolution'
  s.fitness = 'error'  # top-1 error with inherited weights
  s.recalibrate_bn = False  # LayerNorm only
  e = s.evolution
  e.population, e.generations, e.parents = 50, 20, 10
  e.mutations, e.crossovers = 25, 25
  if mutation not in AUTOFORMER_MUTATION:
    raise ValueError(f'mutation convention {mutation!r}: use one of '
                     f'{", ".join(AUTOFORMER_MUTATION)}')
  e.mutation_prob, e.structure_prob = AUTOFORMER_MUTATION[mutation]
  s.evaluations = e.population * (e.generations + 1)
  s.archs_file = s.truth_file = ''
  c.export_best = True


# -- DATA (method=data; configs/data_*.py) -----------------------------------

def dynresnet_base():
  """Every key of the search schema, with DATA's DynamicResNet space
  (bossnax/spaces/dynresnet.py): GAIA-ssl's searched values at 224 px."""
  from bossnax.spaces import dynresnet
  c = search_config()
  space = {'name': 'dynresnet', 'stem_widths': dynresnet.STEM,
           'stage_widths': dynresnet.WIDTHS, 'stage_depths': dynresnet.DEPTHS,
           'expansion': 4, 'num_classes': 1000, 'image_size': 224,
           'stem': 'imagenet',  # 'imagenet' (7x7/2 + max pool) | 'cifar'
           'conv_init': 'he_fan_out',  # torchvision's kaiming_normal
           # elastic input (GAIA-ssl's 192-256 step 16): a resolution gene
           # that sets the cost and the size candidates are scored at; ()
           # = off (every network at image_size)
           'resolutions': ()}
  c.space = type(c.space)(space)
  return c


def data_recipe(c):
  """DATA's (GAIA-ssl's) MoCo v2 training and selection: SGD momentum 0.9,
  lr 0.03 per 256, weight decay 1e-4, cosine, 200 epochs; the sandwich of
  the largest, the smallest and one random subnet per step; MoCo v2's
  views (random resized crop 0.2-1, jitter 0.4/0.4/0.4/0.1 with p 0.8,
  grayscale 0.2, blur p 0.5, flip); the 40 random subnets of a MAdds band
  ranked by cosine distance to the largest network (docs/data.md)."""
  c.method = 'data'
  t = c.train
  t.optimizer = 'sgd'
  t.lr = 0.03
  t.lr_batch = 256
  t.lr_scaling = 'linear'
  t.momentum = 0.9
  t.weight_decay = 1e-4
  t.warmup_epochs = 0.0
  t.epochs_per_block = 200
  t.accum_steps = 1
  t.paths_per_step = 3  # largest, smallest, one random
  t.fair = False
  a = c.augment
  a.ops = 'rrc,color,gray,blur,flip'
  a.rrc_scale = (0.2, 1.0)
  a.jitter = (0.4, 0.4, 0.4, 0.1)
  a.blur_prob = (0.5, 0.5)
  a.solarize_prob = (0.0, 0.0)
  s = c.search
  s.evaluator = 'similarity_to_largest'
  s.similarity = 'cosine'
  s.strategy = 'random'
  s.evaluations = 40
  s.fitness = 'loss'
  s.archs_file = s.truth_file = ''
