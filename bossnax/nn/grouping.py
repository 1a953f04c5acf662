"""Variables grouped by the block that owns them: `block{k}/...`.

Every weight-sharing network of bossnax puts the variables of search block k
under a subtree named `block{k}` (the backbone's layers, adapters and
classifier; the objectives' heads under `heads/block{k}`). The trainer reads
ownership off that structure (`owner_block`): nothing parses module names.

A network builds its groups with `groups(module, n, grouped)` and runs code
inside one with `group(fn, *args)`, where `fn(scope, *args)` creates its
submodules and parameters in `scope`. Calling a group again reuses its
variables, so a block's layers and its adapter can run at different points
of the forward pass.

Initial values: flax draws each parameter from a key derived from its module
path, so inserting `block{k}` would change every initial value. `init`
therefore draws the parameters in the ungrouped layout (`grouped=False`: the
same modules, directly in their parent) and moves them into the groups. The
values are the ones bossnax drew before it grouped variables, so earlier
runs (and tests/golden) are reproduced, and regrouping never changes them.
"""

from __future__ import annotations

import dataclasses
import re

import flax.linen as nn
import jax

_BLOCK = re.compile(r'block(\d+)$')


class Group(nn.Module):
  """A named variable subtree: `fn(self, *args)` runs inside its scope."""

  @nn.compact
  def __call__(self, fn, *args):
    return fn(self, *args)


def groups(module: nn.Module, names, grouped: bool = True):
  """{name: call} where call(fn, *args) runs fn(scope, *args) in the group
  `name` (a child of `module`), or in `module` itself when not grouped.
  Call from inside `module`'s compact method, once per forward pass."""
  out = {}
  for name in names:
    if grouped:
      out[name] = Group(name=name).__call__
    else:
      out[name] = lambda fn, *args: fn(module, *args)
  return out


def block_groups(module: nn.Module, num_blocks: int, grouped: bool = True):
  """[call per block]: groups named block0, block1, ..."""
  g = groups(module, [f'block{k}' for k in range(num_blocks)], grouped)
  return [g[f'block{k}'] for k in range(num_blocks)]


def owner_block(path) -> int | None:
  """The block k of the first `block{k}` key on a tree path (keys or
  jax.tree_util key entries), None if there is none."""
  for k in path:
    name = k.key if isinstance(k, jax.tree_util.DictKey) else k
    m = _BLOCK.match(str(name))
    if m:
      return int(m.group(1))
  return None


def ungrouped(module: nn.Module) -> nn.Module:
  """`module` (and every module it holds as an attribute) with
  grouped=False, wherever the field exists."""
  changes = {}
  for f in dataclasses.fields(module):
    if f.name in ('parent', 'name'):
      continue
    value = getattr(module, f.name, None)
    if isinstance(value, nn.Module) and ungrouped(value) is not value:
      changes[f.name] = ungrouped(value)
  if getattr(module, 'grouped', False):
    changes['grouped'] = False
  return module.clone(**changes) if changes else module


def regroup(flat, like):
  """The tree `flat` (ungrouped layout) rearranged as `like` (the grouped
  layout's shapes): a key of `like` absent from `flat` at that level is an
  inserted group, whose contents are looked up one level up."""
  def rec(f, l):
    if not hasattr(l, 'keys'):
      return f
    return {k: rec(f[k], v) if k in f else rec(f, v) for k, v in l.items()}
  out = rec(flat, like)
  n_in, n_out = (len(jax.tree.leaves(t)) for t in (flat, out))
  if n_in != n_out or jax.tree.structure(out) != jax.tree.structure(like):
    raise ValueError(f'regroup: the grouped layout has {n_out} of the '
                     f'{n_in} ungrouped variables: a module is named '
                     'differently in the two layouts')
  return out


def init(module: nn.Module, rngs, *args, **kwargs):
  """module.init(rngs, *args, **kwargs), with the ungrouped layout's
  initial values (see the module docstring)."""
  flat_module = ungrouped(module)
  if flat_module is module:
    return module.init(rngs, *args, **kwargs)
  flat = flat_module.init(rngs, *args, **kwargs)
  like = jax.eval_shape(lambda: module.init(rngs, *args, **kwargs))
  return regroup(flat, like)


def block_heads(module: nn.Module, head, inputs, num_blocks: int,
                grouped: bool = True):
  """{b: head(b, x)} for each (block b, input x) of `inputs`, each head
  created under `heads/block{b}` of `module` (the objectives' heads). Call
  from inside `module`'s compact method, once per forward pass; `head`
  creates its submodules where it runs (the group's scope)."""
  def run(scope, inputs):
    group = block_groups(scope, num_blocks, grouped)
    return {b: group[b](lambda _scope, b, x: head(b, x), b, x)
            for b, x in inputs.items()}
  return groups(module, ['heads'], grouped)['heads'](run, inputs)


def embed_heads(module: nn.Module, head, x, arch, *, block: int, mode: str,
                start: bool = False):
  """head(block, embedding of block `block` of `module.backbone`), under
  heads/block{b}: what the objectives' models (module.num_blocks,
  module.grouped) compute. While initialising, every block's embedding
  goes through its head, so every head is created."""
  if module.is_initializing():
    embeds, _ = module.backbone(x, arch, mode=mode)
    inputs = dict(enumerate(embeds))
  else:
    inputs = {block: module.backbone(x, arch, block=block, mode=mode,
                                     output='embed', start=start)}
  return block_heads(module, head, inputs, module.num_blocks,
                     module.grouped)[block]
