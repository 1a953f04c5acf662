"""Block-wise supervised classification (the BossNAS paper's "Supv. class."
baseline): BossNAS's plan with a classifier per block trained on labels
instead of bootstrapping, paths scored by validation cross-entropy.

  python -m bossnax.main --config=configs/nats_cifar10.py:quick \
      --config.method=supervised --workdir=/tmp/supervised
"""

from bossnax.methods.bossnas import blockwise_plan
from bossnax.objectives.supervised import BlockSupervised


def build(config, space):
  objective = BlockSupervised.from_config(config, space)
  return blockwise_plan('supervised', objective, config, space)
