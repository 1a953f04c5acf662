"""Block-wise supervised classification (the BossNAS paper's "Supv. class."
baseline): BossNAS's plan with a classifier per block trained on labels
instead of bootstrapping, paths scored by validation cross-entropy.

  python -m bossnax.main --config=configs/nats_cifar10.py:quick \
      --config.method=supervised --workdir=/tmp/supervised
"""

from bossnax.methods.bossnas import blockwise_plan
from bossnax.objectives.supervised import BlockSupervised


def build(config, space):
  objective = BlockSupervised(
      num_classes=space.num_classes,
      label_smoothing=float(config.train.get('label_smoothing', 0.0)))
  return blockwise_plan('supervised', objective, config, space)
