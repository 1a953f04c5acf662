"""Single-path bootstrapping (the paper's ablation of the ensemble):
BossNAS's plan with each path regressing onto its own EMA target.

  python -m bossnax.main --config=configs/nats_cifar10.py:quick \
      --config.method=single_path --workdir=/tmp/single
"""

from bossnax.methods.bossnas import blockwise_plan, bootstrap_fields
from bossnax.objectives.single_path import SinglePathBootstrap


def build(config, space):
  return blockwise_plan('single_path',
                        SinglePathBootstrap(**bootstrap_fields(config)),
                        config, space)
