"""AutoFormer (Chen et al., ICCV 2021): one-shot supervised training of a
weight-entangled supernet with the DeiT recipe (AdamW, warm-up and cosine,
label smoothing, mixup / cutmix, drop path), one uniformly sampled subnet
per step (depth, then each layer's MLP ratio and heads, one embedding
width: the space's `sample`); then an evolution under a parameter range
whose subnets are scored with inherited weights (top-1 on images held out
of the training set) and need no retraining.

  python -m bossnax.main --config=configs/autoformer_cifar.py:quick --workdir=DIR
  python -m bossnax.main --config=configs/autoformer_imagenet.py:S --workdir=DIR \
      --config.data.source=folder --config.data.path=/data/imagenet

Its space is `vit` (bossnax/spaces/vit.py); on NATS it is the supervised
one-shot baseline with the DeiT recipe and AutoFormer's evolution
(docs/autoformer.md).
"""

from bossnax.methods.supervised_oneshot import oneshot_plan


def build(config, space):
  return oneshot_plan('autoformer', config, space)
