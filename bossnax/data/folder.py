"""Images in class folders (ImageNet as the usual extraction scripts leave
it), decoded and cropped on the host:

  DIR/train/<class>/*.JPEG     the training split
  DIR/val/<class>/*.JPEG       the test split (ImageNet's validation set)

Classes are the sorted folder names of DIR/train (n01440764 ... for
ImageNet, so label i is the usual ImageNet class i); DIR/val must use the
same names. Every image leaves the host as a uint8 square of
`data.image_size`, so batches have one static shape:

  train_crop='resize'  shorter side to the size, centre crop: the device's
                       augmentations (rrc, ...) make the views (the search)
  train_crop='rrc'     random resized crop (scale 0.08-1, ratio 3/4-4/3), as
                       torchvision's, then resized to the size (retraining;
                       pair it with --config.augment.ops=flip)
  test split           shorter side to size / 0.875, centre crop

A random crop is a pure function of (seed, step, image index), so a resumed
run and any number of loader workers see the same pixels. The decoding runs
in grain worker processes (data.workers; data/pipeline.py).
"""

from __future__ import annotations

import os

import numpy as np

EXTENSIONS = ('.jpeg', '.jpg', '.png')
LAYOUT = ('DIR/train/<class>/*.JPEG and DIR/val/<class>/*.JPEG (one folder '
          'per class, the same class names in both)')
CROPS = ('resize', 'rrc')


def _list(root, split, classes=None):
  where = os.path.join(root, split)
  if not os.path.isdir(where):
    raise ValueError(f'{where} is missing: data.source=folder reads {LAYOUT}')
  names = sorted(d for d in os.listdir(where)
                 if os.path.isdir(os.path.join(where, d)))
  if classes is None:
    classes = names
  elif set(names) - set(classes):
    extra = sorted(set(names) - set(classes))[:3]
    raise ValueError(f'{where} has classes that {root}/train lacks '
                     f'({", ".join(extra)}): {LAYOUT}')
  paths, labels = [], []
  for i, c in enumerate(classes):
    d = os.path.join(where, c)
    if not os.path.isdir(d):
      continue
    files = sorted(f for f in os.listdir(d) if f.lower().endswith(EXTENSIONS))
    paths += [os.path.join(c, f) for f in files]
    labels += [i] * len(files)
  if not paths:
    raise ValueError(f'{where} holds no .JPEG/.jpg/.png images in class '
                     f'folders: data.source=folder reads {LAYOUT}')
  return classes, np.array(paths), np.array(labels, np.int32)


def random_resized_crop_box(rng, width, height, scale=(0.08, 1.0),
                            ratio=(3 / 4, 4 / 3)):
  """(left, top, w, h) of torchvision's RandomResizedCrop: ten tries at a
  random area and aspect ratio, else the centre crop of clamped ratio."""
  area = width * height
  for _ in range(10):
    target = area * rng.uniform(*scale)
    r = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
    w = int(round(np.sqrt(target * r)))
    h = int(round(np.sqrt(target / r)))
    if 0 < w <= width and 0 < h <= height:
      return (int(rng.integers(0, width - w + 1)),
              int(rng.integers(0, height - h + 1)), w, h)
  r = width / height
  if r < ratio[0]:
    w, h = width, int(round(width / ratio[0]))
  elif r > ratio[1]:
    h, w = height, int(round(height * ratio[1]))
  else:
    w, h = width, height
  return (width - w) // 2, (height - h) // 2, w, h


def _resize_centre(img, size, ratio=1.0):
  from PIL import Image
  short = int(round(size / ratio))
  scale = short / min(img.size)
  img = img.resize((max(short, round(img.size[0] * scale)),
                    max(short, round(img.size[1] * scale))), Image.BILINEAR)
  left, top = (img.size[0] - size) // 2, (img.size[1] - size) // 2
  return img.crop((left, top, left + size, top + size))


def fit(img, size, crop, rng=None):
  """A PIL image as a uint8 [size, size, 3] array (see the module doc)."""
  from PIL import Image
  img = img.convert('RGB')
  if crop == 'rrc':
    left, top, w, h = random_resized_crop_box(rng, *img.size)
    img = img.resize((size, size), Image.BILINEAR,
                     box=(left, top, left + w, top + h))
  elif crop == 'resize':
    img = _resize_centre(img, size)
  else:  # 'centre': evaluation
    img = _resize_centre(img, size, ratio=0.875)
  return np.asarray(img, np.uint8)


def host_crop(img, size, split, train_crop, seed, draw, index):
  """The crop of image `index` of `split` at training step `draw`: a
  random train crop seeded by (seed, step, index), the centre crop for
  evaluation splits (shared by the folder and tfds ImageNet sources)."""
  if split != 'train':
    return fit(img, size, 'centre')
  rng = np.random.default_rng([seed, int(draw or 0), int(index)])
  return fit(img, size, train_crop, rng)


class FolderSource:
  """Lazy: lists the files once, decodes on request (picklable, so grain's
  worker processes can hold it)."""

  def __init__(self, root, image_size, train_crop='resize', seed=0,
               name=None):
    if train_crop not in CROPS:
      raise ValueError(f'data.train_crop={train_crop!r}: use one of {CROPS}')
    self.root, self.seed, self.train_crop = root, seed, train_crop
    classes, *train = _list(root, 'train')
    _, *test = _list(root, 'val', classes)
    self.classes = classes
    self._files = {'train': train, 'test': test}
    self._dirs = {'train': os.path.join(root, 'train'),
                  'test': os.path.join(root, 'val')}
    self.name = name or os.path.basename(os.path.normpath(root))
    self.num_classes = len(classes)
    self.image_shape = (image_size, image_size, 3)

  def num_examples(self, split):
    return len(self._files[split][0])

  def labels(self, split):
    return self._files[split][1]

  def load(self, split, index, draw=0):
    from PIL import Image
    path = os.path.join(self._dirs[split], self._files[split][0][index])
    try:
      with Image.open(path) as img:
        return host_crop(img, self.image_shape[0], split, self.train_crop,
                         self.seed, draw, index)
    except (OSError, ValueError) as e:  # truncated or not an image
      raise ValueError(f'cannot decode {path} ({e}): replace or remove the '
                       'file') from None

  def get(self, split, indices, draw=None):
    indices = np.asarray(indices, np.int64)
    x = np.stack([self.load(split, i, draw or 0) for i in indices])
    return x, self._files[split][1][indices]
