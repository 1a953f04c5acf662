"""Random-access image sources with one interface.

  source.num_examples(split) -> int          split: 'train' | 'test'
  source.get(split, indices) -> (uint8 NHWC images, int32 labels)

'embedded' is a real CIFAR-10 subset shipped in the package (no download);
'npz' reads arrays x_train, y_train, x_test, y_test; 'tfds' reads a prepared
TensorFlow-Datasets dataset through `tfds.data_source` (random access, no
TensorFlow needed). 'synthetic' is uniform noise of the dataset's size (CIFAR:
50,000 train / 10,000 test): it times a run at full scale where the real
data cannot be had; its rankings mean nothing.
"""

from __future__ import annotations

import logging

log = logging.getLogger('bossnax')
import os

import numpy as np

EMBEDDED = os.path.join(os.path.dirname(__file__), 'embedded',
                        'cifar10_subset.npz')
NUM_CLASSES = {'cifar10': 10, 'cifar100': 100, 'imagenet2012': 1000}
_KEYS = ('x_train', 'y_train', 'x_test', 'y_test')


class ArraySource:
  """Images held in host memory."""

  def __init__(self, name, x_train, y_train, x_test, y_test, num_classes):
    self.name = name
    self.num_classes = num_classes
    self._splits = {'train': (x_train, y_train), 'test': (x_test, y_test)}
    self.image_shape = tuple(x_train.shape[1:])

  def num_examples(self, split):
    return len(self._splits[split][0])

  def get(self, split, indices):
    x, y = self._splits[split]
    return x[indices], y[indices].astype(np.int32)


def _check_arrays(arrays, where):
  missing = [k for k in _KEYS if k not in arrays]
  if missing:
    raise ValueError(f'{where} lacks {", ".join(missing)}: an npz source '
                     'needs x_train, y_train, x_test, y_test')
  for k in ('x_train', 'x_test'):
    x = arrays[k]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f'{where}: {k} must be uint8 [N, H, W, 3], got '
                       f'{x.dtype} {x.shape}')
  for x, y in (('x_train', 'y_train'), ('x_test', 'y_test')):
    if len(arrays[x]) != len(arrays[y]):
      raise ValueError(f'{where}: {x} has {len(arrays[x])} images but {y} '
                       f'{len(arrays[y])} labels')


def _from_npz(path, name, num_classes):
  if not os.path.isfile(path):
    raise ValueError(f'npz dataset {path!r} not found: set '
                     '--config.data.path=FILE.npz')
  try:
    with np.load(path) as f:
      arrays = {k: f[k] for k in f.files}
  except Exception as e:  # zip/pickle errors: say which file, not a trace
    raise ValueError(f'cannot read npz dataset {path}: {e}') from None
  _check_arrays(arrays, path)
  if num_classes is None:
    num_classes = int(max(arrays['y_train'].max(), arrays['y_test'].max())) + 1
  return ArraySource(name, *(arrays[k] for k in _KEYS), num_classes)


def _from_tfds(cfg):
  import tensorflow_datasets as tfds  # heavy import, only when asked for
  data_dir = cfg.data_dir or None
  name = cfg.name
  hint = (f'{name} is not prepared in {data_dir or "~/tensorflow_datasets"}: '
          'on a machine with internet run `python -c "import '
          f"tensorflow_datasets as tfds; tfds.builder('{name}'"
          + (f", data_dir='{data_dir}'" if data_dir else '') +
          ").download_and_prepare(file_format='array_record')\"` "
          'and copy the folder here, or use --config.data.source=npz '
          '--config.data.path=FILE.npz')
  if name == 'imagenet2012':
    hint = ('imagenet2012 needs your own archives: put ILSVRC2012_img_train.tar'
            ' and ILSVRC2012_img_val.tar in '
            f'{data_dir or "~/tensorflow_datasets"}/downloads/manual/ and '
            'prepare it with file_format=array_record')
  try:
    builder = tfds.builder(name, data_dir=data_dir,
                           file_format='array_record')
    if not builder.is_prepared():
      if not cfg.get('download', True) or name == 'imagenet2012':
        raise FileNotFoundError(hint)
      builder.download_and_prepare()
    splits = {s: builder.as_data_source(split=getattr(cfg, f'{s}_split'))
              for s in ('train', 'test')}
  except FileNotFoundError:
    raise ValueError(hint) from None
  except Exception as e:  # no network, broken download, missing archives
    first = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
    raise ValueError(f'{hint} ({first[:200]})') from None
  num_classes = NUM_CLASSES.get(name) or builder.info.features[
      'label'].num_classes
  if name == 'imagenet2012':
    return TfdsSource(name, splits, num_classes, cfg.image_size)
  arrays = {}
  for s, src in splits.items():
    items = [src[i] for i in range(len(src))]
    arrays[f'x_{s}'] = np.stack([it['image'] for it in items]).astype(np.uint8)
    arrays[f'y_{s}'] = np.array([it['label'] for it in items], np.int32)
  return ArraySource(name, *(arrays[k] for k in _KEYS), num_classes)


class TfdsSource:
  """Lazy source for datasets too big for memory: decodes on request and
  resizes (shorter side) + centre-crops to a fixed square on the host, so
  batches have static shapes; augmentation happens on device."""

  def __init__(self, name, splits, num_classes, image_size):
    self.name = name
    self.num_classes = num_classes
    self._splits = splits
    self.image_shape = (image_size, image_size, 3)

  def num_examples(self, split):
    return len(self._splits[split])

  def _fit(self, image):
    from PIL import Image
    size = self.image_shape[0]
    img = Image.fromarray(np.asarray(image))
    scale = size / min(img.size)
    img = img.resize((max(size, round(img.size[0] * scale)),
                      max(size, round(img.size[1] * scale))), Image.BILINEAR)
    left, top = (img.size[0] - size) // 2, (img.size[1] - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)))

  def get(self, split, indices):
    items = [self._splits[split][int(i)] for i in indices]
    x = np.stack([self._fit(it['image']) for it in items]).astype(np.uint8)
    return x, np.array([it['label'] for it in items], np.int32)


def _downsample(src, size):
  """Average-pool in-memory images by an integer factor (a CPU preset trains
  at 16x16 to fit minutes; the cost model still describes 32x32 nets)."""
  factor = src.image_shape[0] // size
  if factor * size != src.image_shape[0] or factor < 1:
    raise ValueError(f'data.image_size={size} must divide the images\' '
                     f'{src.image_shape[0]} pixels')
  def pool(x):
    n, h, w, c = x.shape
    x = x.reshape(n, h // factor, factor, w // factor, factor, c)
    return x.astype(np.float32).mean((2, 4)).round().astype(np.uint8)
  arrays = [pool(src._splits['train'][0]), src._splits['train'][1],
            pool(src._splits['test'][0]), src._splits['test'][1]]
  return ArraySource(src.name, *arrays, src.num_classes)


SYNTHETIC_SIZES = {'cifar10': (50_000, 10_000), 'cifar100': (50_000, 10_000),
                   'imagenet2012': (1_281_167, 50_000)}


class SyntheticSource:
  """Noise images made on demand (nothing held in memory), the same for the
  same indices: times a run at full scale (ImageNet included)."""

  def __init__(self, name, sizes, image_size, num_classes):
    self.name = name
    self.num_classes = num_classes
    self._sizes = dict(zip(('train', 'test'), sizes))
    self.image_shape = (image_size, image_size, 3)

  def num_examples(self, split):
    return self._sizes[split]

  def get(self, split, indices):
    indices = np.asarray(indices)
    first = int(indices[0]) if len(indices) else 0
    rng = np.random.default_rng([split == 'train', first, len(indices)])
    n = len(indices) * int(np.prod(self.image_shape))
    x = np.frombuffer(rng.bytes(n), np.uint8).reshape(-1, *self.image_shape)
    return x, (indices % self.num_classes).astype(np.int32)


def _synthetic(cfg):
  if cfg.name not in SYNTHETIC_SIZES:
    raise ValueError(f'synthetic data for {cfg.name!r}: set data.name to one '
                     f'of {sorted(SYNTHETIC_SIZES)}')
  n_train, n_test = SYNTHETIC_SIZES[cfg.name]
  n_train = min(n_train, cfg.get('train_images', 0) or n_train)
  size = cfg.get('image_size', 0) or 32
  log.warning('data: synthetic noise (%d train / %d test images of %d px): '
              'for timing a run at full scale; its rankings mean nothing',
              n_train, n_test, size)
  return SyntheticSource(f'{cfg.name}-synthetic', (n_train, n_test), size,
                         NUM_CLASSES[cfg.name])


def make_source(cfg):
  """The source named by `cfg.source` ('embedded' | 'npz' | 'tfds' |
  'synthetic')."""
  kind = cfg.source
  if kind == 'embedded':
    src = _from_npz(EMBEDDED, 'cifar10-embedded', 10)
    log.info('data: the embedded real CIFAR-10 subset (%d train / %d test '
                 'images); --config.data.source=tfds gives the full dataset',
                 src.num_examples('train'), src.num_examples('test'))
  elif kind == 'npz':
    src = _from_npz(cfg.path, os.path.basename(cfg.path), None)
  elif kind == 'tfds':
    src = _from_tfds(cfg)
  elif kind == 'synthetic':
    src = _synthetic(cfg)
  else:
    raise ValueError(f"unknown data.source {kind!r}: use 'embedded', 'npz', "
                     "'tfds' or 'synthetic'")
  n = cfg.get('train_images', 0)
  if n and isinstance(src, ArraySource) and n < src.num_examples('train'):
    x, y = src.get('train', np.arange(n))
    xt, yt = src.get('test', np.arange(src.num_examples('test')))
    src = ArraySource(src.name, x, y, xt, yt, src.num_classes)
  size = cfg.get('image_size', 0)
  if size and isinstance(src, ArraySource) and src.image_shape[0] != size:
    src = _downsample(src, size)
  return src
