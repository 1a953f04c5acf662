"""State built shape-first: `shapes()` is the checkpoint template (nothing
computed), `init()` the real state, replicated over the mesh."""

from __future__ import annotations

import jax

from bossnax import parallel


class StateBuilder:
  """init_fn(key) -> state pytree. `eager=True` runs it op by op instead of
  as one jitted program: XLA:CPU generates a kernel per variable, and
  compiling HyTra's ~2,000 variables (x4: target, optimiser) as one program
  took minutes; eager ops compile once per distinct shape."""

  def __init__(self, init_fn, mesh, eager: bool = False):
    self.init_fn, self.mesh, self.eager = init_fn, mesh, eager

  def shapes(self, key=None):
    key = jax.random.key(0) if key is None else key
    rep = parallel.replicated(self.mesh)
    return jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=rep),
        jax.eval_shape(self.init_fn, key))

  def init(self, key):
    rep = parallel.replicated(self.mesh)
    if self.eager:
      return jax.device_put(self.init_fn(key), rep)
    return jax.jit(self.init_fn, out_shardings=rep)(key)
