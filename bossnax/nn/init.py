"""Convolution initialisers, chosen by name (`space.conv_init`).

  'torch'       PyTorch's default for nn.Conv2d: kaiming-uniform with
                a = sqrt(5), i.e. uniform with variance 1 / (3 fan_in). The
                official BossNAS supernets (NATS and HyTra) keep it.
  'he_fan_out'  He-normal on fan_out, variance 2 / fan_out: what bossnax
                used before 2026-12-02 (kept for old runs and tests/golden).

A 1x1 shortcut without batch norm after it (the NATS residual block) keeps
its init scale through training under LARS, so the choice matters
(docs/architecture.md). `per_choice_init` draws tensors that stack one
kernel per width choice along axis 0 (the NATS width adapters) as separate
kernels would be drawn.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

CONV_INITS = ('torch', 'he_fan_out')


def check(name: str) -> str:
  if name not in CONV_INITS:
    raise ValueError(f'space.conv_init={name!r}: use one of {CONV_INITS}')
  return name


def conv_init(name: str):
  """The kernel initialiser of a convolution (HWIO kernels; depthwise
  kernels have I = 1, so their fan_in is the window, as in PyTorch)."""
  if check(name) == 'torch':
    return nn.initializers.variance_scaling(1.0 / 3, 'fan_in', 'uniform')
  return nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def conv(features, kernel, stride, name, init):
  """A bias-free square conv with PyTorch's symmetric padding
  ((kernel - 1) // 2) and the initialiser named `init` (the NATS and
  DynamicResNet networks' convolutions)."""
  pad = (kernel - 1) // 2
  return nn.Conv(features, (kernel, kernel), strides=stride,
                 padding=[(pad, pad), (pad, pad)], use_bias=False,
                 kernel_init=conv_init(init), name=name)


def per_choice_init(name: str, fan_in: tuple):
  """Initialiser of a [choices, C_in, C_out] stack of 1x1 kernels, where
  choice r reads only its first fan_in[r] input channels (the width
  adapters: one conv per width in the official code).

  'torch': row r uniform with variance 1 / (3 fan_in[r]), as a separate
  nn.Conv2d(fan_in[r], C_out, 1) would be. 'he_fan_out': the whole stack
  drawn as one kernel (choices counted as a receptive field), as before."""
  if check(name) == 'he_fan_out':
    return conv_init(name)

  def init(key, shape, dtype=jnp.float32):
    if shape[0] != len(fan_in):
      raise ValueError(f'per-choice kernel {shape}: {len(fan_in)} choices')
    bound = jnp.sqrt(1.0 / jnp.asarray(fan_in, jnp.float32))
    u = jax.random.uniform(key, shape, jnp.float32, -1.0, 1.0)
    return (u * bound[:, None, None]).astype(dtype)
  return init
