"""BossNAS (Li et al., ICCV 2021): blocks trained one after another with
ensemble bootstrapping, each scored by its population centre, searched
block-wise with a beam of `search.top_n` prefixes."""

from __future__ import annotations

from bossnax.methods.base import Method, Stage
from bossnax.objectives.ensemble import EnsembleBootstrap
from bossnax.samplers import make_sampler
from bossnax.searchers import BlockwiseBeam
from bossnax.searchers.strategies import Plan


def bootstrap_fields(config):
  """The objective fields shared by the bootstrapping methods."""
  m = config.model
  return dict(proj_hidden=m.proj_hidden, proj_dim=m.proj_dim,
              pred_hidden=m.pred_hidden, ema_base=config.train.ema_base,
              predictor_bn=config.search.get('predictor_bn', 'recalibrate'))


def blockwise_plan(name, objective, config, space) -> Method:
  """Every block in order, one sampler, the block-wise beam."""
  sampler = make_sampler(config, space)
  return Method(name, objective,
                tuple(Stage(k, sampler) for k in range(space.num_blocks)),
                BlockwiseBeam(space, config.search.lambdas,
                              config.search.top_n,
                              archs_file=config.search.get('archs_file', ''),
                              plan=Plan.from_config(
                                  config.search, config.data.image_size)))


def build(config, space) -> Method:
  objective = EnsembleBootstrap(centre=config.search.centre,
                                **bootstrap_fields(config))
  return blockwise_plan('bossnas', objective, config, space)
