"""Methods: which objective, sampler, optimiser and searcher, in which stages.

`--config.method=NAME` picks one; a new method is one module here plus one
line in METHODS (docs/architecture.md, "Adding a method").
"""

from __future__ import annotations

import importlib

from bossnax.methods.base import Method, Stage

METHODS = {
    'autoformer': 'bossnax.methods.autoformer',
    'bossnas': 'bossnax.methods.bossnas',
    'data': 'bossnax.methods.data',
    'dna': 'bossnax.methods.dna',
    'greedynas': 'bossnax.methods.greedynas',
    'single_path': 'bossnax.methods.single_path',
    'supervised': 'bossnax.methods.supervised',
    'supervised_oneshot': 'bossnax.methods.supervised_oneshot',
}

__all__ = ['Method', 'Stage', 'METHODS', 'build_method']


def build_method(config, space) -> Method:
  name = config.get('method', 'bossnas')
  if name not in METHODS:
    raise ValueError(f'method {name!r}: use one of {", ".join(METHODS)} '
                     '(--config.method=...)')
  return importlib.import_module(METHODS[name]).build(config, space)
