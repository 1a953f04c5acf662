"""Random-access image sources with one interface.

  source.num_examples(split) -> int          split: 'train' | 'val' | 'test'
  source.get(split, indices, draw=None) -> (uint8 NHWC images, int32 labels)

`draw` (the training step) seeds random host crops; sources without any
ignore it. 'val', the search's validation images, exists when a holdout or
the NATS-Bench split is configured (data/splits.py); otherwise the search
validates on 'test'.

  embedded   a real CIFAR-10 subset shipped in the package (no download)
  npz        arrays x_train, y_train, x_test, y_test
  archive    an official CIFAR archive as downloaded (data/archives.py)
  folder     DIR/train/<class>/*.JPEG + DIR/val/<class>/*.JPEG (data/folder.py)
  tfds       a TensorFlow-Datasets dataset (prepared on first use; reading it
             needs no TensorFlow, preparing does: requirements-tfds.txt)
  synthetic  uniform noise of the dataset's size (CIFAR: 50,000 train /
             10,000 test): times a run at full scale where the real data
             cannot be had; its rankings mean nothing
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

  def get(self, split, indices, draw=None):
    x, y = self._splits[split]
    return x[indices], y[indices].astype(np.int32)

  def labels(self, split):
    return self._splits[split][1].astype(np.int32)


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


TFDS_EXTRA = ('preparing a tfds dataset needs TensorFlow: pip install -r '
              'requirements-tfds.txt')


def _from_tfds(cfg, seed=0):
  try:
    import tensorflow_datasets as tfds  # heavy import, only when asked for
  except ImportError as e:
    raise ValueError(f'--config.data.source=tfds needs tensorflow-datasets '
                     f'({e}): pip install -r requirements.txt') from None
  data_dir = cfg.data_dir or None
  manual_dir = cfg.get('manual_dir', '') or None
  name = cfg.name
  where = data_dir or '~/tensorflow_datasets'
  hint = (f'{name} is not prepared in {where}: with internet it is '
          'downloaded and prepared on first use (data.download=True, '
          f'{TFDS_EXTRA}); offline, put the archive tfds downloads '
          f'(cifar-10-binary.tar.gz, ...) in --config.data.manual_dir, or '
          'use --config.data.source=archive --config.data.path=ARCHIVE')
  if name == 'imagenet2012':
    hint = ('imagenet2012 needs your own archives: put ILSVRC2012_img_train.tar'
            ' and ILSVRC2012_img_val.tar in --config.data.manual_dir (default '
            f'{where}/downloads/manual/; {TFDS_EXTRA}), or use '
            '--config.data.source=folder --config.data.path=DIR')
  try:
    builder = tfds.builder(name, data_dir=data_dir,
                           file_format='array_record')
    if not builder.is_prepared():
      if not cfg.get('download', True) and not manual_dir:
        raise FileNotFoundError(hint)
      log.info('data: tfds prepares %s in %s (once)', name, where)
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    splits = {s: builder.as_data_source(split=getattr(cfg, f'{s}_split'))
              for s in ('train', 'test')}
  except FileNotFoundError:
    raise ValueError(hint) from None
  except Exception as e:  # no network, broken download, missing archives
    first = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
    if "No module named 'tensorflow'" in first:
      raise ValueError(f'{name}: {TFDS_EXTRA} (reading a prepared dataset '
                       'does not)') from None
    raise ValueError(f'{hint} ({first[:200]})') from None
  num_classes = NUM_CLASSES.get(name) or builder.info.features[
      'label'].num_classes
  if name == 'imagenet2012':
    return lazy_tfds_source(builder, cfg, seed, splits, num_classes)
  arrays = {}
  for s, src in splits.items():
    items = [src[i] for i in range(len(src))]
    # tfds stores the examples shuffled; their ids ('train_00042') give the
    # archive's order back, which NATS-Bench's splits index.
    order = np.argsort([it['id'] for it in items]) if 'id' in items[0] else (
        np.arange(len(items)))
    arrays[f'x_{s}'] = np.stack([items[i]['image'] for i in order]).astype(
        np.uint8)
    arrays[f'y_{s}'] = np.array([items[i]['label'] for i in order], np.int32)
  return ArraySource(name, *(arrays[k] for k in _KEYS), num_classes)


def lazy_tfds_source(builder, cfg, seed=0, splits=None, num_classes=None):
  """A TfdsSource over a prepared builder (decoding on request); `seed`
  (the run's) seeds the random train crops."""
  import tensorflow_datasets as tfds
  names = {s: getattr(cfg, f'{s}_split') for s in ('train', 'test')}
  splits = splits or {s: builder.as_data_source(split=n)
                      for s, n in names.items()}
  # the same records with the image left encoded: labels without decoding
  labels = {s: builder.as_data_source(
      split=n, decoders={'image': tfds.decode.SkipDecoding()})
            for s, n in names.items()}
  num_classes = num_classes or builder.info.features['label'].num_classes
  return TfdsSource(cfg.name, splits, num_classes, cfg.image_size,
                    cfg.get('train_crop', 'resize'), seed, labels)


class TfdsSource:
  """Lazy source for datasets too big for memory (tfds imagenet2012):
  decodes on request and crops to a fixed square on the host as the folder
  source does (data/folder.py: train_crop for training, the centre crop
  for the test split), so batches have static shapes."""

  def __init__(self, name, splits, num_classes, image_size,
               train_crop='resize', seed=0, label_splits=None):
    from bossnax.data.folder import CROPS
    if train_crop not in CROPS:
      raise ValueError(f'data.train_crop={train_crop!r}: use one of {CROPS}')
    self.name = name
    self.num_classes = num_classes
    self._splits = splits
    self.image_shape = (image_size, image_size, 3)
    self.train_crop, self.seed = train_crop, seed
    self._label_splits, self._labels = label_splits, {}

  def num_examples(self, split):
    return len(self._splits[split])

  def labels(self, split):
    """Every label of `split` (reads each record once, images undecoded:
    minutes for ImageNet's 1.28M, once per run, for data.holdout_per_class)."""
    if split not in self._labels:
      if not self._label_splits:
        raise ValueError(f'the labels of {self.name} cannot be listed: use '
                         '--config.data.holdout_fraction')
      src = self._label_splits[split]
      log.info('data: reading the %d labels of %s/%s', len(src), self.name,
               split)
      self._labels[split] = np.array([src[i]['label'] for i in range(
          len(src))], np.int32)
    return self._labels[split]

  def __getstate__(self):  # grain workers need no labels
    state = dict(self.__dict__)
    state['_labels'] = {}
    return state

  def get(self, split, indices, draw=None):
    from PIL import Image
    from bossnax.data.folder import host_crop
    items = [self._splits[split][int(i)] for i in indices]
    x = np.stack([host_crop(Image.fromarray(np.asarray(it['image'])),
                            self.image_shape[0], split, self.train_crop,
                            self.seed, draw, i)
                  for i, it in zip(indices, items)]).astype(np.uint8)
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

  def labels(self, split):
    return (np.arange(self._sizes[split]) % self.num_classes).astype(np.int32)

  def get(self, split, indices, draw=None):
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


SOURCES = ('embedded', 'npz', 'archive', 'folder', 'tfds', 'synthetic')


def _from_archive(cfg):
  from bossnax.data.archives import read_cifar
  arrays = read_cifar(cfg.path, cfg.get('labels', 'fine'))
  dataset = arrays.pop('dataset')
  if dataset != cfg.name:
    raise ValueError(f'{cfg.path} is {dataset}, but data.name={cfg.name!r}: '
                     f'pass --config.data.name={dataset} (and the matching '
                     'config, e.g. configs/nats_cifar100.py)')
  classes = 20 if dataset == 'cifar100' and cfg.get('labels') == 'coarse' \
      else NUM_CLASSES[dataset]
  return ArraySource(os.path.basename(cfg.path), *(arrays[k] for k in _KEYS),
                     classes)


def _with_validation(src, cfg, seed):
  """`src` with the search's 'val' split, when one is configured."""
  from bossnax.data import splits
  nats = cfg.get('nats_split', False)
  per_class = cfg.get('holdout_per_class', 0)
  fraction = cfg.get('holdout_fraction', 0.0)
  if sum(map(bool, (nats, per_class, fraction))) > 1:
    raise ValueError('set one of data.nats_split, data.holdout_per_class and '
                     'data.holdout_fraction')
  if nats:
    return splits.nats_split(src, cfg.name)
  if per_class or fraction:
    return splits.holdout(src, per_class, fraction, seed)
  return src


def make_source(cfg, seed=0):
  """The source named by `cfg.source` (one of SOURCES), with the search's
  validation split when one is configured."""
  kind = cfg.source
  if kind == 'embedded':
    src = _from_npz(EMBEDDED, 'cifar10-embedded', 10)
    log.info('data: the embedded real CIFAR-10 subset (%d train / %d test '
             'images); README "Data" gives the full datasets',
             src.num_examples('train'), src.num_examples('test'))
  elif kind == 'npz':
    src = _from_npz(cfg.path, os.path.basename(cfg.path), None)
  elif kind == 'archive':
    src = _from_archive(cfg)
  elif kind == 'folder':
    from bossnax.data.folder import FolderSource
    if not cfg.path:
      raise ValueError('data.source=folder needs --config.data.path=DIR')
    src = FolderSource(cfg.path, cfg.image_size, cfg.get('train_crop',
                                                         'resize'), seed)
  elif kind == 'tfds':
    src = _from_tfds(cfg, seed)
  elif kind == 'synthetic':
    src = _synthetic(cfg)
  else:
    raise ValueError(f'unknown data.source {kind!r}: use one of '
                     f'{", ".join(SOURCES)}')
  n = cfg.get('train_images', 0)
  if n and isinstance(src, ArraySource) and n < src.num_examples('train'):
    x, y = src.get('train', np.arange(n))
    xt, yt = src.get('test', np.arange(src.num_examples('test')))
    src = ArraySource(src.name, x, y, xt, yt, src.num_classes)
  size = cfg.get('image_size', 0)
  if size and isinstance(src, ArraySource) and src.image_shape[0] != size:
    src = _downsample(src, size)
  return _with_validation(src, cfg, seed)


def validation_split(source):
  """The split the search validates on: 'val' when the source holds one
  out, else 'test'."""
  return 'val' if 'val' in getattr(source, 'splits', ()) else 'test'
