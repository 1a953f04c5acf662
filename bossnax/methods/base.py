"""A method is a stage plan: which blocks train in which order, each with a
sampler and an optimiser, one objective for the supernet, then a searcher.
The run (bossnax/run.py) executes the plan and never asks which method it
runs."""

from __future__ import annotations

import dataclasses
from typing import Any

from bossnax.objectives.base import Objective


@dataclasses.dataclass(frozen=True)
class Stage:
  """Train block `block` with paths from `sampler` behind the searcher's
  prefixes, then let the searcher score it (`search_after`)."""
  block: int
  sampler: Any  # bossnax.samplers.PathSampler or alike
  search_after: bool = True
  # True: the sampler draws whole architectures [K, L] (one-shot methods),
  # not block `block`'s paths behind a prefix
  whole: bool = False


@dataclasses.dataclass(frozen=True)
class Method:
  name: str
  objective: Objective
  stages: tuple[Stage, ...]
  searcher: Any  # bossnax.searchers.BlockwiseBeam or alike
