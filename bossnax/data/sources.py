"""Random-access image sources with one interface.

  source.name, source.num_classes, source.image_shape   (H, W, C)
  source.num_examples(split) -> int                     split: 'train' | 'test'
  source.get(split, indices) -> (uint8 NHWC images, int32 labels)

'embedded' is a real CIFAR-10 subset shipped in the package (no download);
'npz' reads arrays x_train, y_train, x_test, y_test; 'tfds' reads a prepared
TensorFlow-Datasets dataset in ArrayRecord format through
`as_data_source` (random access, no TensorFlow needed to read).
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import io
import logging
import os

import numpy as np

log = logging.getLogger('bossnax')

EMBEDDED = os.path.join(os.path.dirname(__file__), 'embedded',
                        'cifar10_subset.npz')
_KEYS = ('x_train', 'y_train', 'x_test', 'y_test')
# Fixed-shape tfds datasets up to this size are decoded once into memory;
# bigger or variable-shape ones (ImageNet) are decoded per requested index.
_IN_MEMORY_BYTES = 8 << 30


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


class TfdsSource:
  """Lazy tfds source for datasets too big for memory: decodes the requested
  images on a thread pool and resizes (shorter side) + centre-crops them to a
  fixed square on the host, so batches have static shapes."""

  def __init__(self, name, splits, num_classes, image_size):
    self.name = name
    self.num_classes = num_classes
    self._splits = splits
    self.image_shape = (image_size, image_size, 3)
    self._pool = concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 4)

  def num_examples(self, split):
    return len(self._splits[split])

  def get(self, split, indices):
    items = self._splits[split].__getitems__([int(i) for i in indices])
    size = self.image_shape[0]
    x = list(self._pool.map(lambda it: decode(it['image'], size), items))
    return np.stack(x), np.array([it['label'] for it in items], np.int32)


def decode(data, size=None):
  """Encoded image bytes -> uint8 RGB [H, W, 3]; with `size`, the shorter side
  resized to `size` and the centre square cropped."""
  from PIL import Image
  img = Image.open(io.BytesIO(data))
  if size:
    img.draft('RGB', (size, size))  # JPEG: decode at a reduced scale, faster
  img = img.convert('RGB')  # ImageNet holds a few CMYK and grayscale files
  if size:
    img = fit(img, size)
  return np.asarray(img, np.uint8)


def fit(img, size):
  """PIL image -> its centre `size` x `size` square after resizing the
  shorter side to `size`."""
  from PIL import Image
  w, h = img.size
  scale = size / min(w, h)
  w, h = max(size, round(w * scale)), max(size, round(h * scale))
  img = img.resize((w, h), Image.BILINEAR, reducing_gap=3.0)
  left, top = (w - size) // 2, (h - size) // 2
  return img.crop((left, top, left + size, top + size))


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
    if arrays[y].ndim != 1 or arrays[y].dtype.kind not in 'iu':
      raise ValueError(f'{where}: {y} must be integer [N], got '
                       f'{arrays[y].dtype} {arrays[y].shape}')
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
    raise ValueError(f'cannot read npz dataset {path}: {_first_line(e)}'
                     ) from None
  _check_arrays(arrays, path)
  if num_classes is None:
    num_classes = int(max(arrays['y_train'].max(), arrays['y_test'].max())) + 1
  return ArraySource(name, *(arrays[k] for k in _KEYS), num_classes)


def _first_line(e):
  text = str(e).strip()
  return text.splitlines()[0][:200] if text else type(e).__name__


def _tfds_hint(name, root):
  if name == 'imagenet2012':
    return ('imagenet2012 is not prepared in {root}: put ILSVRC2012_img_train.tar '
            'and ILSVRC2012_img_val.tar in {root}/downloads/manual/ and run '
            "`python -c \"import tensorflow_datasets as tfds; "
            "tfds.builder('imagenet2012', data_dir='{root}').download_and_prepare("
            "file_format='array_record')\"` (needs tensorflow)").format(root=root)
  return (f'{name} is not prepared in {root}: run `python -c "import '
          f"tensorflow_datasets as tfds; tfds.builder('{name}', "
          f"data_dir='{root}').download_and_prepare(file_format='array_record')"
          '"` on a machine with internet and tensorflow, or use '
          '--config.data.source=npz --config.data.path=FILE.npz')


def _can_prepare():
  """Preparing encodes images with TensorFlow (fail before a long download),
  and the hosts of a multi-host run would race on the same folder."""
  import jax
  return (importlib.util.find_spec('tensorflow') is not None and
          jax.process_count() == 1)


def _tfds_splits(cfg):
  """{'train': data source, 'test': data source} and the builder."""
  try:
    import tensorflow_datasets as tfds  # heavy import, only when asked for
  except ImportError:
    raise ValueError('data.source=tfds needs tensorflow-datasets: pip install '
                     'tensorflow-datasets') from None
  name = cfg.name
  try:
    builder = tfds.builder(name, data_dir=cfg.data_dir or None,
                           file_format='array_record')
  except tfds.core.registered.DatasetNotFoundError:
    raise ValueError(f'unknown tfds dataset {name!r}: set --config.data.name '
                     '(e.g. cifar10, cifar100, imagenet2012)') from None
  root = os.path.dirname(os.path.dirname(builder.data_dir))
  hint = _tfds_hint(name, root)
  if not builder.is_prepared():
    # ImageNet needs the user's archives and hours: never started from here.
    if not cfg.get('download', False) or name == 'imagenet2012' or (
        not _can_prepare()):
      raise ValueError(hint)
    try:
      builder.download_and_prepare(file_format='array_record')
    except Exception as e:  # no network, broken download
      raise ValueError(f'{hint} (download failed: {_first_line(e)})') from None
  if builder.info.file_format != tfds.core.FileFormat.ARRAY_RECORD:
    raise ValueError(f'{name} in {root} is stored as '
                     f'{builder.info.file_format.value}; random access needs '
                     "array_record: prepare it again with file_format="
                     "'array_record'")
  skip = {'image': tfds.decode.SkipDecoding()}  # decoded by PIL, threaded
  splits = {}
  for s in ('train', 'test'):
    split = cfg.get(f'{s}_split', s)
    try:
      splits[s] = builder.as_data_source(split=split, decoders=skip)
    except Exception as e:
      raise ValueError(f'{name}: no split {split!r} ({_first_line(e)}): '
                       f'set --config.data.{s}_split (splits: '
                       f'{", ".join(builder.info.splits)})') from None
  return splits, builder


def _from_tfds(cfg):
  splits, builder = _tfds_splits(cfg)
  name, features = cfg.name, builder.info.features
  num_classes = features['label'].num_classes
  shape = features['image'].shape
  fixed = None not in shape
  n = sum(len(s) for s in splits.values())
  if not fixed or n * np.prod(shape) > _IN_MEMORY_BYTES:
    size = cfg.get('image_size', 0)
    if not size:
      raise ValueError(f'{name} has images of varying size: set '
                       '--config.data.image_size (e.g. 224)')
    return TfdsSource(name, splits, num_classes, size)
  arrays = {}
  with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 4) as pool:
    for s, src in splits.items():
      items = src.__getitems__(list(range(len(src))))
      arrays[f'x_{s}'] = np.stack(list(pool.map(
          lambda it: decode(it['image']), items)))
      arrays[f'y_{s}'] = np.array([it['label'] for it in items], np.int32)
  log.info('data: %s loaded into memory (%d train / %d test images)', name,
           len(arrays['x_train']), len(arrays['x_test']))
  return ArraySource(name, *(arrays[k] for k in _KEYS), num_classes)


def _resize(src, size):
  """In-memory images at another square size: average pooling for integer
  factors (exact, fast); otherwise the shorter side resized and centre-cropped
  (a CPU preset trains at 16x16 to fit minutes)."""
  h, w = src.image_shape[:2]
  factor = h // size
  def convert(x):
    if h == w and factor * size == h:
      n, _, _, c = x.shape
      x = x.reshape(n, size, factor, size, factor, c)
      return x.astype(np.float32).mean((2, 4)).round().astype(np.uint8)
    from PIL import Image
    return np.stack([np.asarray(fit(Image.fromarray(im), size)) for im in x])
  (xa, ya), (xb, yb) = src._splits['train'], src._splits['test']
  return ArraySource(src.name, convert(xa), ya, convert(xb), yb,
                     src.num_classes)


def make_source(cfg):
  """The source named by `cfg.source` ('embedded' | 'npz' | 'tfds').

  `cfg.train_images` (> 0) keeps the first N training images and
  `cfg.image_size` resizes in-memory images to that square side.
  """
  kind = cfg.source
  if kind == 'embedded':
    src = _from_npz(EMBEDDED, 'cifar10-embedded', 10)
    log.info('data: using the embedded real CIFAR-10 subset of %d train / %d '
             'test images; --config.data.source=tfds gives the full dataset',
             src.num_examples('train'), src.num_examples('test'))
  elif kind == 'npz':
    src = _from_npz(cfg.path, os.path.basename(cfg.path), None)
  elif kind == 'tfds':
    src = _from_tfds(cfg)
  else:
    raise ValueError(f"unknown data.source {kind!r}: use 'embedded', 'npz' "
                     "or 'tfds'")
  if not isinstance(src, ArraySource):
    return src
  n = cfg.get('train_images', 0)
  if n and n < src.num_examples('train'):
    x, y = src.get('train', np.arange(n))
    xt, yt = src.get('test', np.arange(src.num_examples('test')))
    src = ArraySource(src.name, x, y, xt, yt, src.num_classes)
  size = cfg.get('image_size', 0)
  if size and src.image_shape[:2] != (size, size):
    src = _resize(src, size)
  return src
