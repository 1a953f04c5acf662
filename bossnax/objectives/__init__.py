"""Training signals: what a supernet learns from and how its paths are scored.

An objective adds heads around the supernet (`model`), may carry extra state
(an EMA target, a teacher, a queue), defines the loss of a step and the
per-step update of its extra state, and scores a batch of paths for the
search. The engine (bossnax/engine/) runs it and never asks which one it is.

  ensemble.EnsembleBootstrap      BossNAS: every path predicts the ensemble
  single_path.SinglePathBootstrap each path predicts its own target (BYOL)
  supervised.BlockSupervised      a classifier per block, cross-entropy
  distill.Distillation            DNA: regress a frozen teacher's blocks
  supervised.OneShotSupervised    SPOS / GreedyNAS / AutoFormer: whole paths
  sandwich.SandwichContrastive    DATA: MoCo v2 on the sandwich, the key
                                  encoder at the largest network
"""

from bossnax.objectives.base import Objective

__all__ = ['Objective']
