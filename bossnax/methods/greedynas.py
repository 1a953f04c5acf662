"""GreedyNAS (You et al., CVPR 2020): one-shot supervised training of the
whole supernet that spends its steps on the paths that look good.

Each round samples greedy.sample whole paths (from the candidate pool with
probability epsilon, rising 0 -> 0.8 over training, else uniformly), scores
them by their loss on a fixed validation subset with the current weights
(one vectorised pass through the evaluator), trains the greedy.keep best
one step each and puts them in the pool; training stops early when the
pool stops changing (bossnax/samplers/greedy.py). The search is then
search.strategy (evolution in the GreedyNAS configs) over whole
architectures with the supernet as fitness, starting from the pool's best.

  python -m bossnax.main --config=configs/greedynas_cifar.py:quick --workdir=DIR
  python -m bossnax.main --config=configs/nats_cifar10.py:quick \
      --config.method=greedynas --workdir=DIR \
      --config.search.archs_file=../shared/benchmarks/nats_sss_cifar10_sample2048.csv
"""

from bossnax.methods.supervised_oneshot import oneshot_plan
from bossnax.samplers.greedy import GreedySampler
from bossnax.searchers import GreedyArchs


def build(config, space):
  g, t = config.greedy, config.train
  sampler = GreedySampler(
      space, sample=g.sample, keep=g.keep, pool_size=g.pool_size,
      epsilon_final=g.epsilon_final, epsilon_kind=g.epsilon_schedule,
      seed=config.seed, paths_per_step=t.paths_per_step,
      max_flops=g.max_flops, alpha=g.early_stop_alpha,
      check_every=g.check_every_steps)
  return oneshot_plan('greedynas', config, space, GreedyArchs, sampler)
