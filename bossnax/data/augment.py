"""On-device augmentations in pure JAX (jit-able, stateless).

Images come in as uint8 NHWC and leave as normalised float32. Every example
draws its randomness from `jax.random.split(key, n)`, so the same key always
gives the same views (the search relies on that for its fixed view pairs).

Ops (a comma-separated `augment.ops`):
  crop_flip  zero-pad by `pad`, random crop back, random horizontal flip
             (the official BossNAS NATS views);
  rrc        random resized crop (area `rrc_scale`, default 0.08-1; ratio
             3/4-4/3) to the input size;
  flip       random horizontal flip;
  color      colour jitter (brightness, contrast, saturation, hue strengths
             `jitter`, default BYOL's .4, .4, .2, .1; MoCo v2's .4, .4, .4,
             .1) with probability 0.8, in a fixed order;
  gray       grayscale with probability 0.2;
  blur       Gaussian blur, probability per view from `blur_prob`;
  solarize   solarisation, probability per view from `solarize_prob`;
  randaug    RandAugment as timm's `augment.randaug` string (default
             'rand-m9-mstd0.5-inc1', DeiT's and AutoFormer's), on whole
             levels 0..255 as timm's PIL ops (bossnax/data/randaugment.py);
             the fill of its geometric ops is the dataset mean;
  erase      random erasing (timm's RandomErasing, mode 'pixel', one box)
             with probability `erase_prob`, on the normalised image; must
             come last.

`mix_batch` (mixup / cutmix with soft targets) is applied by the train
steps that read labels (bossnax.retrain, the supervised objectives).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from bossnax.data import randaugment

OPS = ('crop_flip', 'rrc', 'flip', 'color', 'gray', 'blur', 'solarize',
       'randaug', 'erase')


def _per_example(fn):
  """Lift fn(key, image) to fn(key, images) with one key per example."""
  def batched(key, images, *args):
    keys = jax.random.split(key, images.shape[0])
    return jax.vmap(lambda k, x: fn(k, x, *args))(keys, images)
  return batched


def _flip(key, x):
  return jnp.where(jax.random.bernoulli(key), x[:, ::-1], x)


def _crop_flip(key, x, pad):
  h, w, _ = x.shape
  k1, k2, k3 = jax.random.split(key, 3)
  padded = jnp.pad(x, ((pad, pad), (pad, pad), (0, 0)))
  dy = jax.random.randint(k1, (), 0, 2 * pad + 1)
  dx = jax.random.randint(k2, (), 0, 2 * pad + 1)
  crop = jax.lax.dynamic_slice(padded, (dy, dx, 0), x.shape)
  return _flip(k3, crop)


def _rrc(key, x, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
  """Random resized crop with a static output shape (scale_and_translate)."""
  h, w, _ = x.shape
  k1, k2, k3, k4 = jax.random.split(key, 4)
  area = jax.random.uniform(k1, (), minval=scale[0], maxval=scale[1]) * h * w
  log_r = jax.random.uniform(k2, (), minval=jnp.log(ratio[0]),
                             maxval=jnp.log(ratio[1]))
  r = jnp.exp(log_r)
  cw = jnp.clip(jnp.sqrt(area * r), 1.0, w)
  ch = jnp.clip(jnp.sqrt(area / r), 1.0, h)
  y0 = jax.random.uniform(k3, ()) * (h - ch)
  x0 = jax.random.uniform(k4, ()) * (w - cw)
  s = jnp.array([h / ch, w / cw])
  t = -jnp.array([y0, x0]) * s
  return jax.image.scale_and_translate(x, x.shape, (0, 1), s, t, 'linear',
                                       antialias=True)


def _gray(x):
  g = x @ jnp.array([0.299, 0.587, 0.114], x.dtype)
  return jnp.broadcast_to(g[..., None], x.shape)


def _color(key, x, jitter=(0.4, 0.4, 0.2, 0.1)):
  """Colour jitter on [0, 1] images (torchvision's factors: brightness,
  contrast, saturation in 1 -/+ strength, hue in -/+ strength), applied
  with probability 0.8."""
  ks = jax.random.split(key, 5)
  jb, jc, js, jh = jitter
  b = jax.random.uniform(ks[0], (), minval=1 - jb, maxval=1 + jb)
  c = jax.random.uniform(ks[1], (), minval=1 - jc, maxval=1 + jc)
  s = jax.random.uniform(ks[2], (), minval=1 - js, maxval=1 + js)
  hue = jax.random.uniform(ks[3], (), minval=-jh, maxval=jh)
  y = x * b
  y = (y - y.mean()) * c + y.mean()
  y = (y - _gray(y)) * s + _gray(y)
  # Hue: rotate the chroma plane of YIQ by 2*pi*hue.
  to_yiq = jnp.array([[0.299, 0.596, 0.211], [0.587, -0.274, -0.523],
                      [0.114, -0.322, 0.312]], x.dtype)
  yiq = y @ to_yiq
  ang = 2 * jnp.pi * hue
  rot = jnp.array([[1, 0, 0], [0, jnp.cos(ang), jnp.sin(ang)],
                   [0, -jnp.sin(ang), jnp.cos(ang)]], x.dtype)
  y = yiq @ rot @ jnp.linalg.inv(to_yiq)
  y = jnp.clip(y, 0.0, 1.0)
  return jnp.where(jax.random.bernoulli(ks[4], 0.8), y, x)


def _gray_p(key, x):
  return jnp.where(jax.random.bernoulli(key, 0.2), _gray(x), x)


def _blur(key, x, prob):
  k1, k2 = jax.random.split(key)
  sigma = jax.random.uniform(k1, (), minval=0.1, maxval=2.0)
  size = max(3, (x.shape[0] // 10) | 1)  # ~10% of the side, odd
  r = jnp.arange(size) - size // 2
  kern = jnp.exp(-(r ** 2) / (2 * sigma ** 2))
  kern = kern / kern.sum()
  pad = size // 2
  y = jnp.pad(x, ((pad, pad), (0, 0), (0, 0)), mode='reflect')
  y = sum(kern[i] * y[i:i + x.shape[0]] for i in range(size))
  y = jnp.pad(y, ((0, 0), (pad, pad), (0, 0)), mode='reflect')
  y = sum(kern[i] * y[:, i:i + x.shape[1]] for i in range(size))
  return jnp.where(jax.random.bernoulli(k2, prob), y, x)


def _solarize(key, x, prob):
  y = jnp.where(x < 0.5, x, 1.0 - x)
  return jnp.where(jax.random.bernoulli(key, prob), y, x)


def _erase(key, x, prob, attempts=10):
  """timm's RandomErasing (mode 'pixel', count 1): with probability
  `prob`, a box of 2%-1/3 of the area, aspect ratio log-uniform in
  0.3-3.3 (the first of `attempts` draws that fits), filled with standard
  normal noise per pixel and channel."""
  h, w, _ = x.shape
  k_do, k_area, k_ratio, k_y, k_x, k_fill = jax.random.split(key, 6)
  area = h * w * jax.random.uniform(k_area, (attempts,), minval=0.02,
                                    maxval=1 / 3)
  ratio = jnp.exp(jax.random.uniform(k_ratio, (attempts,),
                                     minval=jnp.log(0.3), maxval=jnp.log(1 / 0.3)))
  eh = jnp.round(jnp.sqrt(area * ratio)).astype(jnp.int32)
  ew = jnp.round(jnp.sqrt(area / ratio)).astype(jnp.int32)
  fits = (eh < h) & (ew < w)
  first = jnp.argmax(fits)
  eh, ew = eh[first], ew[first]
  y0 = jax.random.randint(k_y, (), 0, jnp.maximum(h - eh, 1))
  x0 = jax.random.randint(k_x, (), 0, jnp.maximum(w - ew, 1))
  rows, cols = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
  box = (rows >= y0) & (rows < y0 + eh) & (cols >= x0) & (cols < x0 + ew)
  do = jax.random.bernoulli(k_do, prob) & fits.any()
  noise = jax.random.normal(k_fill, x.shape, x.dtype)
  return jnp.where(do & box[:, :, None], noise, x)


def cutmix_box(key, lam, height: int, width: int):
  """A box of area about (1 - lam) of the image, centred uniformly and
  clipped at the borders: (y0, y1, x0, x1), half-open."""
  ky, kx = jax.random.split(key)
  cut = jnp.sqrt(1.0 - lam)
  ch = jnp.floor(height * cut).astype(jnp.int32)
  cw = jnp.floor(width * cut).astype(jnp.int32)
  cy = jax.random.randint(ky, (), 0, height)
  cx = jax.random.randint(kx, (), 0, width)
  return (jnp.clip(cy - ch // 2, 0, height), jnp.clip(cy + ch // 2, 0, height),
          jnp.clip(cx - cw // 2, 0, width), jnp.clip(cx + cw // 2, 0, width))


def mix_batch(key, images, targets, mixup_alpha=0.8, cutmix_alpha=1.0,
              switch_prob=0.5, mix_prob=1.0):
  """Mixup or cutmix of the batch with its reverse (one lambda per batch).

  images [B, H, W, C] float, targets [B, K] soft labels. With probability
  `mix_prob` the batch is mixed: cutmix with probability `switch_prob` when
  both are on. Mixup: x = lam x + (1 - lam) x_rev. Cutmix pastes a box of
  x_rev and sets lam = 1 - box area / image area (the exact share). Targets
  get lam t + (1 - lam) t_rev. Returns (images, targets, lam).
  """
  if (mixup_alpha <= 0 and cutmix_alpha <= 0) or mix_prob <= 0:
    return images, targets, jnp.ones((), jnp.float32)
  k_do, k_switch, k_mix, k_cut, k_box = jax.random.split(key, 5)
  rev_x, rev_t = images[::-1], targets[::-1]
  h, w = images.shape[1:3]
  lam, mixed = jnp.ones((), jnp.float32), images
  if mixup_alpha > 0:
    lam = jax.random.beta(k_mix, mixup_alpha, mixup_alpha)
    mixed = lam * images + (1 - lam) * rev_x
  if cutmix_alpha > 0:
    y0, y1, x0, x1 = cutmix_box(
        k_box, jax.random.beta(k_cut, cutmix_alpha, cutmix_alpha), h, w)
    rows, cols = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
    box = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
    cut_x = jnp.where(box[None, :, :, None], rev_x, images)
    cut_lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
    use_cut = (jax.random.bernoulli(k_switch, switch_prob)
               if mixup_alpha > 0 else True)
    mixed = jnp.where(use_cut, cut_x, mixed)
    lam = jnp.where(use_cut, cut_lam, lam)
  do = jax.random.bernoulli(k_do, mix_prob)
  lam = jnp.where(do, lam, 1.0).astype(jnp.float32)
  images = jnp.where(do, mixed, images)
  return images, lam * targets + (1 - lam) * rev_t, lam


def normalize(x, mean, std):
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def eval_view(images, mean, std):
  return normalize(images.astype(jnp.float32) / 255.0, mean, std)


def _view_fn(cfg):
  """fn(key, images uint8 [N,H,W,C], v) -> one view, float32 normalised;
  `v` (0 or 1) picks the per-view probabilities of blur and solarize."""
  ops = [o.strip() for o in cfg.ops.split(',') if o.strip()]
  bad = [o for o in ops if o not in OPS]
  if bad:
    raise ValueError(f'unknown augmentation {bad[0]!r} in augment.ops: use '
                     f'a comma-separated list of {", ".join(OPS)}')
  if 'erase' in ops and ops[-1] != 'erase':
    raise ValueError("augment.ops: 'erase' works on the normalised image: "
                     'put it last')
  erase = ops[-1] == 'erase'
  ops = ops[:-1] if erase else ops
  erase_p = float(cfg.get('erase_prob', 0.25))
  blur_p = tuple(cfg.get('blur_prob', (1.0, 0.1)))
  sol_p = tuple(cfg.get('solarize_prob', (0.0, 0.2)))
  rrc_scale = tuple(float(v) for v in cfg.get('rrc_scale', (0.08, 1.0)))
  jitter = tuple(float(v) for v in cfg.get('jitter', (0.4, 0.4, 0.2, 0.1)))
  if len(rrc_scale) != 2 or not 0 < rrc_scale[0] <= rrc_scale[1] <= 1:
    raise ValueError(f'augment.rrc_scale={rrc_scale}: give (min, max) area '
                     'fractions with 0 < min <= max <= 1')
  if len(jitter) != 4:
    raise ValueError(f'augment.jitter={jitter}: give four strengths '
                     '(brightness, contrast, saturation, hue)')
  # parsed even when unused, so a mistyped string never passes unnoticed
  ra_spec = randaugment.RandAugmentSpec.parse(
      cfg.get('randaug', 'rand-m9-mstd0.5-inc1'))
  if 'randaug' in ops:
    ra_fill = jnp.asarray([min(255, round(255 * m)) for m in cfg.mean],
                          jnp.float32)

  def one_view(key, images, v):
    x = images.astype(jnp.float32)
    crop_in_uint8_range = True
    for i, op in enumerate(ops):
      k = jax.random.fold_in(key, i)
      if op == 'crop_flip':
        x = _per_example(_crop_flip)(k, x, cfg.pad)
        continue
      if op == 'randaug':  # on whole levels, as timm's PIL images
        levels = x if crop_in_uint8_range else jnp.round(x * 255.0)
        levels = _per_example(randaugment.rand_augment)(
            k, jnp.clip(levels, 0, 255), ra_spec, ra_fill)
        x = levels if crop_in_uint8_range else levels / 255.0
        continue
      if crop_in_uint8_range:  # colour ops work on [0, 1]
        x, crop_in_uint8_range = x / 255.0, False
      if op == 'rrc':
        x = _per_example(_rrc)(k, x, rrc_scale)
      elif op == 'flip':
        x = _per_example(_flip)(k, x)
      elif op == 'color':
        x = _per_example(_color)(k, x, jitter)
      elif op == 'gray':
        x = _per_example(_gray_p)(k, x)
      elif op == 'blur':
        x = _per_example(_blur)(k, x, blur_p[v])
      elif op == 'solarize':
        x = _per_example(_solarize)(k, x, sol_p[v])
    if crop_in_uint8_range:
      x = x / 255.0
    x = normalize(x, cfg.mean, cfg.std)
    if erase:
      x = _per_example(_erase)(jax.random.fold_in(key, len(ops)), x, erase_p)
    return x

  return one_view


def make_single_view_fn(cfg):
  """fn(key, images uint8 [N,H,W,C]) -> one view (supervised training)."""
  one_view = _view_fn(cfg)
  return lambda key, images: one_view(key, images, 0)


def make_view_fn(cfg):
  """fn(key, images uint8 [N,H,W,C]) -> (view1, view2), float32 normalised."""
  one_view = _view_fn(cfg)

  def views(key, images):
    k1, k2 = jax.random.split(key)
    return one_view(k1, images, 0), one_view(k2, images, 1)
  return views
