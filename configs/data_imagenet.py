r"""DATA (GAIA-ssl) on ImageNet: the DynamicResNet supernet of GAIA-ssl
(stem 32-64, stage widths 48-80 / 96-160 / 192-320 / 384-640, depths 2-4 /
2-6 / 5-29 / 2-4), MoCo v2 with the sandwich rule and the key encoder at
the largest network, then 40 random subnets of 3-4 G MAdds ranked by the
cosine distance of their projections to the largest network's.

  python -m bossnax.main --config=configs/data_imagenet.py --workdir=DIR \
      --config.data.source=folder --config.data.path=/data/imagenet --config.data.workers=8

GAIA-ssl trains on 10% of ImageNet (its ImageNet-10% list); pass the same
subset as a folder, or --config.data.train_images=N for the first N. 50
images per class held out of the training set are the downstream images
the selection embeds (any task's images can be: --config.data.*).
Presets: ':byol' (the predictor variant instead of the queue).
"""

from bossnax import defaults


def get_config(preset: str = ''):
  if preset not in ('', 'byol'):
    raise ValueError(f'unknown preset {preset!r}: use data_imagenet.py or '
                     'data_imagenet.py:byol')
  c = defaults.dynresnet_base()
  defaults.imagenet_search_data(c)
  defaults.data_recipe(c)
  c.train.batch_size = 256
  c.search.batch_size = 256
  c.search.calib_batch = 256
  c.search.num_images = 0
  c.search.path_chunk = 1  # subnets one after another (memory)
  c.search.min_flops, c.search.flops_budget = 3000.0, 4000.0
  if preset == 'byol':
    c.moco.loss = 'byol'
    c.moco.momentum = 0.996  # BYOL's base tau, constant here
    c.moco.feat_dim = 256
    c.moco.neck_hidden = 4096
  return c
