r"""AutoFormer on ImageNet: the official T, S or B supernet (bossnax/spaces/
vit.py), the DeiT recipe of its supernet command, then its evolution.

  python -m bossnax.main --config=configs/autoformer_imagenet.py:S --workdir=DIR \
      --config.data.source=folder --config.data.path=/data/imagenet --config.data.workers=8
  python -m bossnax.main --config=configs/autoformer_imagenet.py:T,paper_mutation ...

Presets, comma-separated: a layout (T, S, B; default S) and `paper_mutation`
(the mutation probabilities swapped: 0.4 per layer, 0.2 for depth and
embedding width; the official code's 0.2 / 0.4 otherwise). The S search keeps
subnets of 18-23 M parameters (the official evolution's defaults); T and B
have no published range: set --config.search.min_params /
--config.search.params_budget.

100 images per class are held out of ImageNet-train as the search's
validation set (the official subImageNet's size; it also trains on them,
bossnax does not), ImageNet's own validation set is the test set.
"""

from bossnax import defaults


def get_config(preset: str = ''):
  opts = [p.strip() for p in preset.split(',') if p.strip()]
  layouts = [p for p in opts if p in ('T', 'S', 'B')]
  unknown = [p for p in opts if p not in ('T', 'S', 'B', 'paper_mutation')]
  if unknown or len(layouts) > 1:
    raise ValueError(f'unknown preset {preset!r}: use autoformer_imagenet.py:'
                     'T|S|B[,paper_mutation]')
  layout = layouts[0] if layouts else 'S'
  c = defaults.vit_base(layout)
  defaults.imagenet_search_data(c)
  c.data.holdout_per_class = 100
  defaults.autoformer_recipe(
      c, 'paper' if 'paper_mutation' in opts else 'code')
  c.search.batch_size = 256
  c.search.num_images = 0  # the 100,000 held out
  c.search.path_chunk = 1  # subnets one after another (memory)
  if layout == 'S':
    c.search.min_params, c.search.params_budget = 18.0, 23.0
  return c
