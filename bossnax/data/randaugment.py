"""RandAugment on the device, as timm's `rand-m9-mstd0.5-inc1` (DeiT and
AutoFormer's training views), in pure JAX.

Per image, `n` layers; each picks one of the 15 ops uniformly (with
replacement), applies it with probability 0.5 at a magnitude drawn from
N(m, mstd) clipped to [0, mmax], and a random sign for the signed ones.
The ops follow PIL on uint8 images (timm runs them on PIL images): every op
ends on whole levels 0..255, as PIL's do, so the op-by-op tests compare with
PIL itself (tests/test_randaugment.py). The geometric ops are one affine
warp (a matrix per op, so a layer warps once whatever op it drew) with
PIL's bicubic sampling (DeiT's `interpolation=bicubic`) and timm's fill,
the dataset mean.

Config string (timm's grammar): `rand-m9-n2-mstd0.5-mmax10-p0.5-inc1`;
`inc1` picks the ops whose strength grows with the magnitude (posterize,
solarize and the enhancements), the DeiT default (`inc0` is off here; timm
reads any `inc` section as on).
"""

from __future__ import annotations

import dataclasses
import math
import re

import jax
import jax.numpy as jnp

# timm's _RAND_INCREASING_TRANSFORMS and _RAND_TRANSFORMS, in their order
INCREASING = ('AutoContrast', 'Equalize', 'Invert', 'Rotate',
              'PosterizeIncreasing', 'SolarizeIncreasing', 'SolarizeAdd',
              'ColorIncreasing', 'ContrastIncreasing', 'BrightnessIncreasing',
              'SharpnessIncreasing', 'ShearX', 'ShearY', 'TranslateXRel',
              'TranslateYRel')
PLAIN = ('AutoContrast', 'Equalize', 'Invert', 'Rotate', 'Posterize',
         'Solarize', 'SolarizeAdd', 'Color', 'Contrast', 'Brightness',
         'Sharpness', 'ShearX', 'ShearY', 'TranslateXRel', 'TranslateYRel')
GEOMETRIC = ('Rotate', 'ShearX', 'ShearY', 'TranslateXRel', 'TranslateYRel')


@dataclasses.dataclass(frozen=True)
class RandAugmentSpec:
  magnitude: float = 10.0
  layers: int = 2
  magnitude_std: float = 0.0
  magnitude_max: float = 10.0
  increasing: bool = False
  prob: float = 0.5

  @property
  def ops(self):
    return INCREASING if self.increasing else PLAIN

  @classmethod
  def parse(cls, text: str) -> 'RandAugmentSpec':
    """timm's config string, e.g. 'rand-m9-mstd0.5-inc1'."""
    parts = text.split('-')
    if parts[0] != 'rand':
      raise ValueError(f'augment.randaug={text!r}: write it as timm does, '
                       "e.g. 'rand-m9-mstd0.5-inc1'")
    kw = {}
    for part in parts[1:]:
      key, value = (re.split(r'(\d.*)', part) + ['', ''])[:2]
      try:
        if key == 'm':
          kw['magnitude'] = float(value)
        elif key == 'n':
          kw['layers'] = int(value)
        elif key == 'mstd':
          kw['magnitude_std'] = float(value)
        elif key == 'mmax':
          kw['magnitude_max'] = float(value)
        elif key == 'inc':
          kw['increasing'] = bool(int(value))
        elif key == 'p':
          kw['prob'] = float(value)
        else:
          raise ValueError
      except ValueError:
        raise ValueError(f'augment.randaug={text!r}: unknown or malformed '
                         f'section {part!r}; sections are m, n, mstd, mmax, '
                         'p, inc (e.g. rand-m9-mstd0.5-inc1)') from None
    if kw.get('magnitude_std', 0) > 100:  # timm: uniform in [0, m]
      kw['magnitude_std'] = math.inf
    return cls(**kw)


# ---- the ops, on one float32 image [H, W, 3] holding whole levels 0..255 ----
def _gray(x):
  """PIL's convert('L'): ITU-R 601-2 luma in 16-bit fixed point, rounded."""
  return jnp.floor((x[..., 0] * 19595 + x[..., 1] * 38470 + x[..., 2] * 7471
                    + 32768) / 65536)


def _blend(degenerate, x, factor):
  """PIL's Image.blend / ImageEnhance: degenerate + factor * (x -
  degenerate), truncated toward zero, clipped to 0..255."""
  return jnp.clip(jnp.trunc(degenerate + factor * (x - degenerate)), 0, 255)


def auto_contrast(x):
  lo = x.min((0, 1))
  hi = x.max((0, 1))
  y = jnp.clip(jnp.floor((x - lo) * 255.0 / jnp.maximum(hi - lo, 1.0)), 0,
               255)
  return jnp.where(hi > lo, y, x)


def equalize(x):
  """PIL's ImageOps.equalize, per channel."""
  def channel(c):
    idx = c.astype(jnp.int32).ravel()
    hist = jnp.zeros(256, jnp.int32).at[idx].add(1)
    last = hist[jnp.max(idx)]  # count of the brightest level present
    step = (idx.size - last) // 255
    before = jnp.cumsum(hist) - hist  # pixels below each level
    lut = jnp.clip((step // 2 + before) // jnp.maximum(step, 1), 0, 255)
    return jnp.where(step > 0, lut[idx].reshape(c.shape).astype(c.dtype), c)
  return jnp.stack([channel(x[..., i]) for i in range(3)], -1)


def invert(x):
  return 255.0 - x


def posterize(x, bits):
  keep = jnp.floor(2.0 ** (8 - bits))  # levels per kept step
  return jnp.where(bits >= 8, x, jnp.floor(x / keep) * keep)


def solarize(x, threshold):
  return jnp.where(x < threshold, x, 255.0 - x)


def solarize_add(x, add, threshold=128):
  return jnp.where(x < threshold, jnp.minimum(x + add, 255.0), x)


def color(x, factor):
  return _blend(_gray(x)[..., None], x, factor)


def contrast(x, factor):
  mean = jnp.floor(_gray(x).mean() + 0.5)
  return _blend(mean, x, factor)


def brightness(x, factor):
  return _blend(0.0, x, factor)


def sharpness(x, factor):
  """PIL's ImageEnhance.Sharpness: blend with the SMOOTH filter ([[1, 1,
  1], [1, 5, 1], [1, 1, 1]] / 13, rounded), borders kept."""
  k = jnp.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], jnp.float32)
  h, w = x.shape[:2]
  pad = jnp.pad(x, ((1, 1), (1, 1), (0, 0)))
  smooth = sum(k[i, j] * pad[i:i + h, j:j + w] for i in range(3)
               for j in range(3))
  smooth = jnp.clip(jnp.floor(smooth / 13.0 + 0.5), 0, 255)
  inner = jnp.zeros((h, w, 1), bool).at[1:-1, 1:-1].set(True)
  return _blend(jnp.where(inner, smooth, x), x, factor)


def _cubic_weights(t):
  """PIL's bicubic resampling weights of the 4 neighbours at offsets -1,
  0, 1, 2 from a point t in [0, 1) past the second (cubic convolution with
  a = -1, PIL's Geometry.c)."""
  t2, t3 = t * t, t * t * t
  return jnp.stack([-t + 2 * t2 - t3, 1 - 2 * t2 + t3, t + t2 - t3,
                    -t2 + t3], -1)


def _bicubic(x, ys, xs):
  """x [H, W, C] sampled at index coordinates (ys, xs) [h, w]: 4 x 4
  neighbours clamped to the image, PIL's weights."""
  h, w = x.shape[:2]
  y0, x0 = jnp.floor(ys), jnp.floor(xs)
  wy, wx = _cubic_weights(ys - y0), _cubic_weights(xs - x0)
  rows = jnp.clip(y0[..., None].astype(jnp.int32) + jnp.arange(-1, 3), 0,
                  h - 1)
  cols = jnp.clip(x0[..., None].astype(jnp.int32) + jnp.arange(-1, 3), 0,
                  w - 1)
  patch = x[rows[..., :, None], cols[..., None, :]]  # [h, w, 4, 4, C]
  return jnp.einsum('hwijc,hwi,hwj->hwc', patch, wy, wx)


def affine(x, matrix, fill):
  """PIL's Image.transform(AFFINE, matrix, BICUBIC): output pixel centre
  (u, v) samples the input at (a u + b v + c, d u + e v + f); points outside
  the image take `fill`; rounded to whole levels."""
  h, w = x.shape[:2]
  a, b, c, d, e, f = (matrix[i] for i in range(6))
  v, u = jnp.meshgrid(jnp.arange(h) + 0.5, jnp.arange(w) + 0.5,
                      indexing='ij')
  xs, ys = a * u + b * v + c, d * u + e * v + f
  inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
  out = _bicubic(x, ys - 0.5, xs - 0.5)
  out = jnp.where(inside[..., None], jnp.clip(jnp.trunc(out), 0, 255),
                  jnp.asarray(fill, x.dtype))
  return out


def affine_matrix(name, level, h, w):
  """(a, b, c, d, e, f) of a geometric op at a signed level (degrees,
  shear factor or fraction of the side), as timm hands it to PIL."""
  if name == 'Rotate':  # PIL's rotate: counter-clockwise about the centre
    t = -jnp.deg2rad(level)
    cos, sin = jnp.cos(t), jnp.sin(t)
    cx, cy = w / 2.0, h / 2.0
    return jnp.stack([cos, sin, cx - cos * cx - sin * cy,
                      -sin, cos, cy + sin * cx - cos * cy])
  one, zero = jnp.ones_like(level), jnp.zeros_like(level)
  if name == 'ShearX':
    return jnp.stack([one, level, zero, zero, one, zero])
  if name == 'ShearY':
    return jnp.stack([one, zero, zero, level, one, zero])
  if name == 'TranslateXRel':
    return jnp.stack([one, zero, level * w, zero, one, zero])
  if name == 'TranslateYRel':
    return jnp.stack([one, zero, zero, zero, one, level * h])
  raise ValueError(name)


def level_arg(name, magnitude, sign):
  """timm's level-to-argument rule of op `name` at `magnitude` (0..10);
  `sign` (+1 or -1) is its random negation where the op has one."""
  m = magnitude / 10.0
  if name == 'Rotate':
    return sign * m * 30.0
  if name in ('ShearX', 'ShearY'):
    return sign * m * 0.3
  if name in ('TranslateXRel', 'TranslateYRel'):
    return sign * m * 0.45
  if name == 'Posterize':
    return jnp.floor(m * 4)
  if name == 'PosterizeIncreasing':
    return 4 - jnp.floor(m * 4)
  if name == 'Solarize':  # timm's caps matter only past mmax 10
    return jnp.minimum(256, jnp.floor(m * 256))
  if name == 'SolarizeIncreasing':
    return 256 - jnp.minimum(256, jnp.floor(m * 256))
  if name == 'SolarizeAdd':
    return jnp.minimum(128, jnp.floor(m * 110))
  if name in ('Color', 'Contrast', 'Brightness', 'Sharpness'):
    return m * 1.8 + 0.1
  if name.endswith('Increasing'):  # the enhancements: 1 -/+ 0.9 m, >= 0.1
    return jnp.maximum(0.1, 1.0 + sign * m * 0.9)
  return jnp.zeros_like(magnitude)  # AutoContrast, Equalize, Invert


def apply_op(name, x, magnitude, sign, fill):
  """Op `name` on image x (whole levels 0..255) at `magnitude`, `sign`."""
  arg = level_arg(name, magnitude, sign)
  if name in GEOMETRIC:
    return affine(x, affine_matrix(name, arg, *x.shape[:2]), fill)
  base = name.replace('Increasing', '')
  fn = {'AutoContrast': auto_contrast, 'Equalize': equalize,
        'Invert': invert}.get(base)
  if fn is not None:
    return fn(x)
  return {'Posterize': posterize, 'Solarize': solarize,
          'SolarizeAdd': solarize_add, 'Color': color,
          'Contrast': contrast, 'Brightness': brightness,
          'Sharpness': sharpness}[base](x, arg)


def layer_draws(key, layer, spec: RandAugmentSpec):
  """(op index, applied?, magnitude, sign) of layer `layer` of the image
  whose key is `key`."""
  k_op, k_apply, k_mag, k_sign = jax.random.split(
      jax.random.fold_in(key, layer), 4)
  op = jax.random.randint(k_op, (), 0, len(spec.ops))
  magnitude = spec.magnitude
  if spec.magnitude_std == math.inf:
    magnitude = jax.random.uniform(k_mag, (), maxval=spec.magnitude)
  elif spec.magnitude_std > 0:
    magnitude = magnitude + spec.magnitude_std * jax.random.normal(k_mag)
  magnitude = jnp.clip(jnp.asarray(magnitude, jnp.float32), 0.0,
                       spec.magnitude_max)
  sign = jnp.where(jax.random.bernoulli(k_sign), -1.0, 1.0)
  return op, jax.random.bernoulli(k_apply, spec.prob), magnitude, sign


def rand_augment(key, x, spec: RandAugmentSpec, fill):
  """One image [H, W, 3] of whole levels 0..255 (float32) through
  `spec.layers` random ops. The geometric ops share one warp per layer: a
  layer draws its op, builds that op's matrix (the identity for a colour
  op), warps once and then picks among the colour ops' results."""
  ops = spec.ops
  geometric = [i for i, n in enumerate(ops) if n in GEOMETRIC]
  colour = [i for i, n in enumerate(ops) if n not in GEOMETRIC]
  h, w = x.shape[:2]
  identity = jnp.array([1.0, 0, 0, 0, 1.0, 0])
  for layer in range(spec.layers):
    op, applied, magnitude, sign = layer_draws(key, layer, spec)
    matrix = identity
    for i in geometric:
      m = affine_matrix(ops[i], level_arg(ops[i], magnitude, sign), h, w)
      matrix = jnp.where(op == i, m, matrix)
    is_geometric = jnp.isin(op, jnp.array(geometric))
    warped = affine(x, matrix, fill)
    branches = [lambda x, m, s, n=ops[i]: apply_op(n, x, m, s, fill)
                for i in colour]
    colour_index = jnp.clip(jnp.searchsorted(jnp.array(colour), op), 0,
                            len(colour) - 1)
    recoloured = jax.lax.switch(colour_index, branches, x, magnitude, sign)
    y = jnp.where(is_geometric, warped, recoloured)
    x = jnp.where(applied, y, x)
  return x
