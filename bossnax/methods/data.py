"""DATA (GAIA-ssl, CVPR 2022): one self-supervised supernet trained once
with the sandwich rule (largest, smallest and random subnets each step)
and MoCo v2 whose key encoder is always the largest network; then, for a
task and a budget, the subnets closest to the largest network's
representation of the task's images, without labels.

  python -m bossnax.main --config=configs/data_cifar.py:quick --workdir=DIR
  python -m bossnax.main --config=configs/nats_cifar10.py:quick \
      --config.method=data --workdir=DIR

The objective is bossnax/objectives/sandwich.py, the distances
bossnax/objectives/similarity.py, the sampler samplers.SandwichSampler;
candidates come from search.archs_file or the search strategy (random in a
MAdds band by default in configs/data_*.py). docs/data.md.
"""

from bossnax.methods.supervised_oneshot import oneshot_plan
from bossnax.objectives.sandwich import SandwichContrastive
from bossnax.samplers import SandwichSampler


def build(config, space):
  t = config.train
  # The key encoder runs one path (the largest) on the step's shared views;
  # width groups would also narrow the sandwich's largest slot.
  if t.width_groups != 1 or t.views_per_path:
    raise ValueError('method=data trains the sandwich at full width on '
                     'shared views: set train.width_groups=1 and '
                     'train.views_per_path=False')
  return oneshot_plan(
      'data', config, space,
      sampler=SandwichSampler(space, config.train.paths_per_step,
                              config.seed),
      objective=SandwichContrastive.from_config(config, space))
