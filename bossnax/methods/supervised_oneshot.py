"""One-shot supervised training (SPOS; the BossNAS paper's Table 6
baseline, and the base of GreedyNAS): one stage trains the whole supernet,
each step on uniformly sampled whole paths with one classifier at the end;
then every candidate architecture is scored as a whole network by its
validation cross-entropy.

  python -m bossnax.main --config=configs/nats_cifar10.py:quick \
      --config.method=supervised_oneshot --workdir=/tmp/spos \
      --config.search.archs_file=../shared/benchmarks/nats_sss_cifar10_sample2048.csv
"""

from bossnax.methods.base import Method, Stage
from bossnax.objectives.supervised import OneShotSupervised
from bossnax.samplers import WholeSampler
from bossnax.searchers import WholeArchs
from bossnax.searchers.strategies import Plan


def oneshot_plan(name, config, space, searcher_cls=WholeArchs,
                 sampler=None, objective=None) -> Method:
  """One stage over the whole supernet (uniform whole paths unless
  `sampler`), the supervised one-shot objective with the run's label
  smoothing and batch mixing unless `objective`, whole networks scored and
  searched."""
  objective = objective or OneShotSupervised.from_config(config, space)
  sampler = sampler or WholeSampler(space, config.train.paths_per_step,
                                    config.seed)
  return Method(name, objective, (Stage(0, sampler, whole=True),),
                searcher_cls(space, config.search.get('archs_file', ''),
                             config.search.get('num_archs', 0),
                             plan=Plan.from_config(config.search,
                                                   config.data.image_size),
                             chunk=config.search.path_chunk,
                             fitness=config.search.fitness))


def build(config, space):
  return oneshot_plan('supervised_oneshot', config, space)
