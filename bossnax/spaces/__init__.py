"""Search spaces by name. A new space is one new module here plus one line."""

from bossnax.spaces.base import Arch, Block, Layer, SearchSpace

__all__ = ["Arch", "Block", "Layer", "SearchSpace", "make_space", "NAMES"]


def make_space(space_cfg) -> SearchSpace:
  """Build the space named by `space_cfg.name` from the rest of its fields."""
  kwargs = {k: v for k, v in space_cfg.items() if k != 'name'}
  name = space_cfg.name
  if name == 'nats':
    from bossnax.spaces.nats import NATSSpace
    return NATSSpace(**kwargs)
  if name == 'hytra':
    from bossnax.spaces.hytra import HyTraSpace
    return HyTraSpace(**kwargs)
  if name == 'mbconv':
    from bossnax.spaces.mbconv import MBConvSpace
    return MBConvSpace(**kwargs)
  if name == 'vit':
    from bossnax.spaces.vit import ViTSpace
    return ViTSpace(**kwargs)
  if name == 'dynresnet':
    from bossnax.spaces.dynresnet import DynResNetSpace
    return DynResNetSpace(**kwargs)
  raise ValueError(f'unknown search space {name!r}: use one of {NAMES}')


NAMES = ('nats', 'hytra', 'mbconv', 'vit', 'dynresnet')
