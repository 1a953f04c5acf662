"""On-device augmentations in pure JAX (jit-able, stateless).

Images come in as uint8 NHWC and leave as normalised float32. Every example
draws its randomness from `jax.random.split(key, n)`, so the same key always
gives the same views (the search relies on that for its fixed view pairs).

Ops (a comma-separated `augment.ops`, applied in the order written):
  crop_flip  zero-pad by `pad`, random crop back, random horizontal flip
             (the official BossNAS NATS views);
  rrc        random resized crop (scale 0.08-1, ratio 3/4-4/3) to
             `crop_size` (0 = the input size);
  flip       random horizontal flip;
  color      colour jitter with probability 0.8: brightness .4, contrast .4,
             saturation .2, hue .1 (torchvision's meaning of the factors),
             in a random order per example as in BYOL;
  gray       grayscale with probability 0.2;
  blur       Gaussian blur (sigma 0.1-2, kernel ~10% of the side),
             probability per view from `blur_prob` (BYOL: 1.0, 0.1);
  solarize   solarisation, probability per view from `solarize_prob`
             (BYOL: 0.0, 0.2).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

OPS = ('crop_flip', 'rrc', 'flip', 'color', 'gray', 'blur', 'solarize')
_GRAY = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision


def _per_example(fn):
  """Lift fn(key, image, *args) to fn(key, images, *args), one key each."""
  def batched(key, images, *args):
    keys = jax.random.split(key, images.shape[0])
    return jax.vmap(lambda k, x: fn(k, x, *args))(keys, images)
  return batched


def _apply(key, prob, fn, x):
  return jnp.where(jax.random.bernoulli(key, prob), fn(x), x)


# -- geometry (any dtype) ---------------------------------------------------------------
def _flip(key, x):
  return _apply(key, 0.5, lambda x: x[:, ::-1], x)


def _crop_flip(key, x, pad):
  k1, k2, k3 = jax.random.split(key, 3)
  padded = jnp.pad(x, ((pad, pad), (pad, pad), (0, 0)))
  dy = jax.random.randint(k1, (), 0, 2 * pad + 1)
  dx = jax.random.randint(k2, (), 0, 2 * pad + 1)
  crop = jax.lax.dynamic_slice(padded, (dy, dx, 0), x.shape)
  return _flip(k3, crop)


def _rrc(key, x, out_size, scale, ratio):
  """Random resized crop. A box whose side exceeds the image is clipped to
  it (instead of torchvision's 10 retries) to keep the shape static."""
  h, w, c = x.shape
  k1, k2, k3, k4 = jax.random.split(key, 4)
  area = jax.random.uniform(k1, (), minval=scale[0], maxval=scale[1]) * h * w
  r = jnp.exp(jax.random.uniform(k2, (), minval=jnp.log(ratio[0]),
                                 maxval=jnp.log(ratio[1])))
  cw = jnp.clip(jnp.sqrt(area * r), 1.0, w)
  ch = jnp.clip(jnp.sqrt(area / r), 1.0, h)
  y0 = jax.random.uniform(k3, ()) * (h - ch)
  x0 = jax.random.uniform(k4, ()) * (w - cw)
  s = jnp.array([out_size[0] / ch, out_size[1] / cw])
  # Edge coordinate u of the output samples the input at u / s + (y0, x0).
  t = -jnp.array([y0, x0]) * s
  return jax.image.scale_and_translate(
      x.astype(jnp.float32), (*out_size, c), (0, 1), s, t, 'linear',
      antialias=True)


def random_crop_flip(key, images, pad=4):
  """Zero-pad by `pad`, crop a random window of the original size, flip
  horizontally with probability 0.5."""
  return _per_example(_crop_flip)(key, images, pad)


def random_flip(key, images):
  return _per_example(_flip)(key, images)


def random_resized_crop(key, images, out_size, scale=(0.08, 1.0),
                        ratio=(3 / 4, 4 / 3)):
  """float32 [N, *out_size, C] crops of random area fraction `scale` and
  aspect ratio `ratio` (log-uniform), bilinearly resized."""
  if isinstance(out_size, int):
    out_size = (out_size, out_size)
  return _per_example(_rrc)(key, images, tuple(out_size), scale, ratio)


# -- colour (float32 in [0, 1]) -------------------------------------------------------
def _luma(x):
  return x @ jnp.array(_GRAY, x.dtype)


def _gray(x):
  return jnp.broadcast_to(_luma(x)[..., None], x.shape)


def rgb_to_hsv(x):
  r, g, b = x[..., 0], x[..., 1], x[..., 2]
  v = x.max(-1)
  d = v - x.min(-1)
  s = jnp.where(v > 0, d / jnp.where(v > 0, v, 1), 0)
  dd = jnp.where(d > 0, d, 1)
  h = jnp.where(v == r, (g - b) / dd,
                jnp.where(v == g, 2 + (b - r) / dd, 4 + (r - g) / dd))
  h = jnp.where(d > 0, (h / 6) % 1.0, 0)
  return jnp.stack([h, s, v], -1)


def hsv_to_rgb(x):
  h, s, v = x[..., 0:1], x[..., 1:2], x[..., 2:3]
  k = (jnp.array([5.0, 3.0, 1.0]) + h * 6) % 6
  return v - v * s * jnp.clip(jnp.minimum(k, 4 - k), 0, 1)


def _shift_hue(x, delta):
  hsv = rgb_to_hsv(x)
  return hsv_to_rgb(hsv.at[..., 0].set((hsv[..., 0] + delta) % 1.0))


def _color(key, x, strength=(0.4, 0.4, 0.2, 0.1), prob=0.8):
  b, c, s, h = strength
  ks = jax.random.split(key, 6)
  fb = jax.random.uniform(ks[0], (), minval=1 - b, maxval=1 + b)
  fc = jax.random.uniform(ks[1], (), minval=1 - c, maxval=1 + c)
  fs = jax.random.uniform(ks[2], (), minval=1 - s, maxval=1 + s)
  fh = jax.random.uniform(ks[3], (), minval=-h, maxval=h)
  ops = [
      lambda y: y * fb,
      lambda y: (y - _luma(y).mean()) * fc + _luma(y).mean(),
      lambda y: (y - _gray(y)) * fs + _gray(y),
      lambda y: _shift_hue(y, fh),
  ]
  order = jax.random.permutation(ks[4], 4)
  # One loop body holding the four ops keeps the compiled graph small.
  jitter = lambda y: jax.lax.fori_loop(
      0, 4, lambda i, y: jnp.clip(jax.lax.switch(order[i], ops, y), 0, 1), y)
  return _apply(ks[5], prob, jitter, x)


def _gray_p(key, x, prob=0.2):
  return _apply(key, prob, _gray, x)


def _blur(key, x, prob):
  k1, k2 = jax.random.split(key)
  sigma = jax.random.uniform(k1, (), minval=0.1, maxval=2.0)
  size = max(3, (x.shape[0] // 10) | 1)  # BYOL: 23 taps at 224 pixels
  r = jnp.arange(size) - size // 2
  kern = jnp.exp(-(r ** 2) / (2 * sigma ** 2))
  kern = kern / kern.sum()
  p = size // 2

  def blur(y):  # separable: rows, then columns, reflect-padded
    z = jnp.pad(y, ((p, p), (0, 0), (0, 0)), mode='reflect')
    y = sum(kern[i] * z[i:i + y.shape[0]] for i in range(size))
    z = jnp.pad(y, ((0, 0), (p, p), (0, 0)), mode='reflect')
    return sum(kern[i] * z[:, i:i + y.shape[1]] for i in range(size))
  return _apply(k2, prob, blur, x)


def _solarize(key, x, prob):
  return _apply(key, prob, lambda y: jnp.where(y < 0.5, y, 1.0 - y), x)


def color_jitter(key, images, strength=(0.4, 0.4, 0.2, 0.1), prob=0.8):
  """Brightness, contrast, saturation, hue in random order, with `prob`."""
  return _per_example(_color)(key, images, strength, prob)


def random_grayscale(key, images, prob=0.2):
  return _per_example(_gray_p)(key, images, prob)


def gaussian_blur(key, images, prob):
  return _per_example(_blur)(key, images, prob)


def solarize(key, images, prob):
  return _per_example(_solarize)(key, images, prob)


# -- views ------------------------------------------------------------------------------
def normalize(x, mean, std):
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def eval_view(images, mean, std):
  """uint8 images -> normalised float32, no randomness."""
  return normalize(jnp.asarray(images, jnp.float32) / 255.0, mean, std)


def parse_ops(text):
  ops = [o.strip() for o in text.split(',') if o.strip()]
  bad = [o for o in ops if o not in OPS]
  if bad or not ops:
    raise ValueError(f'unknown augmentation {bad[0] if bad else text!r} in '
                     f'augment.ops: use a comma-separated list of '
                     f'{", ".join(OPS)}')
  return ops


def make_view_fn(cfg):
  """fn(key, images uint8 [N,H,W,C]) -> (view1, view2), float32 normalised.

  cfg: ops, pad, mean, std, blur_prob and solarize_prob (per view), and
  optionally crop_size (rrc output side, 0 = input size).
  """
  ops = parse_ops(cfg.ops)
  blur_p = tuple(cfg.get('blur_prob', (1.0, 0.1)))
  sol_p = tuple(cfg.get('solarize_prob', (0.0, 0.2)))
  crop = cfg.get('crop_size', 0)
  pad = cfg.get('pad', 4)

  def one_view(key, images, v):
    x = jnp.asarray(images, jnp.float32) / 255.0  # every op works on [0, 1]
    for i, op in enumerate(ops):
      k = jax.random.fold_in(key, i)
      if op == 'crop_flip':
        x = random_crop_flip(k, x, pad)
      elif op == 'rrc':
        x = random_resized_crop(k, x, crop or x.shape[1:3])
      elif op == 'flip':
        x = random_flip(k, x)
      elif op == 'color':
        x = color_jitter(k, x)
      elif op == 'gray':
        x = random_grayscale(k, x)
      elif op == 'blur':
        x = gaussian_blur(k, x, blur_p[v])
      elif op == 'solarize':
        x = solarize(k, x, sol_p[v])
    return normalize(x, cfg.mean, cfg.std)

  def views(key, images):
    k1, k2 = jax.random.split(key)
    return one_view(k1, images, 0), one_view(k2, images, 1)
  return views
