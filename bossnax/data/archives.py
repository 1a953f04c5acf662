"""The official CIFAR archives, read (and written) with numpy alone.

  read_cifar(path, labels='fine') -> dict(x_train, y_train, x_test, y_test)
  write_cifar(path, arrays, fmt='python' | 'binary')

Both distributions of the Toronto site are understood, for CIFAR-10 and
CIFAR-100, gzipped or not:

  cifar-10-python.tar.gz   cifar-10-batches-py/data_batch_{1..5}, test_batch
                           (pickled dicts: 'data' uint8 [N, 3072] in R, G, B
                           planes, 'labels')
  cifar-10-binary.tar.gz   cifar-10-batches-bin/data_batch_{1..5}.bin,
                           test_batch.bin (records: 1 label byte + 3,072)
  cifar-100-python.tar.gz  cifar-100-python/train, test ('fine_labels',
                           'coarse_labels')
  cifar-100-binary.tar.gz  cifar-100-binary/train.bin, test.bin (records:
                           coarse byte, fine byte, 3,072)

The images keep the archive's order, which is the order NATS-Bench's split
files index (bossnax/data/splits). The pickles are read by an unpickler that
only rebuilds numpy arrays and plain containers, so an archive cannot run
code.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile

import numpy as np

_PIXELS = 32 * 32 * 3
CIFAR10_CLASSES = ('airplane automobile bird cat deer dog frog horse ship '
                   'truck').split()

# (top folder, train members, test member) of each layout
LAYOUTS = {
    ('cifar10', 'python'): ('cifar-10-batches-py',
                            [f'data_batch_{i}' for i in range(1, 6)],
                            'test_batch'),
    ('cifar10', 'binary'): ('cifar-10-batches-bin',
                            [f'data_batch_{i}.bin' for i in range(1, 6)],
                            'test_batch.bin'),
    ('cifar100', 'python'): ('cifar-100-python', ['train'], 'test'),
    ('cifar100', 'binary'): ('cifar-100-binary', ['train.bin'], 'test.bin'),
}
EXPECTED = ('a CIFAR archive of the Toronto site: cifar-10-python.tar.gz, '
            'cifar-10-binary.tar.gz, cifar-100-python.tar.gz or '
            'cifar-100-binary.tar.gz')


class _ArrayUnpickler(pickle.Unpickler):
  """Rebuilds numpy arrays and builtins only (what the CIFAR pickles hold)."""

  _ALLOWED = {('numpy.core.multiarray', '_reconstruct'),
              ('numpy._core.multiarray', '_reconstruct'),
              ('numpy', 'ndarray'), ('numpy', 'dtype'),
              ('_codecs', 'encode')}

  def find_class(self, module, name):
    if (module, name) in self._ALLOWED:
      return super().find_class(module, name)
    raise pickle.UnpicklingError(f'{module}.{name} is not part of a CIFAR '
                                 'batch')


def _layout(names):
  for (dataset, fmt), (top, train, test) in LAYOUTS.items():
    if f'{top}/{test}' in names:
      return dataset, fmt, top, train, test
  return None


def _images(flat, where):
  flat = np.asarray(flat, np.uint8)
  if flat.ndim != 2 or flat.shape[1] != _PIXELS:
    raise ValueError(f'{where}: images are {flat.shape}, not [N, 3072]')
  return flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _read_python(data, dataset, labels, where):
  try:
    # latin1: the official batches are Python 2 pickles of numpy arrays
    batch = _ArrayUnpickler(io.BytesIO(data), encoding='latin1').load()
  except Exception as e:
    raise ValueError(f'{where} is not a CIFAR python batch ({e})') from None
  if not isinstance(batch, dict):
    raise ValueError(f'{where} is not a CIFAR python batch (not a dict)')
  batch = {k.decode() if isinstance(k, bytes) else k: v
           for k, v in batch.items()}
  key = 'labels' if dataset == 'cifar10' else (
      'fine_labels' if labels == 'fine' else 'coarse_labels')
  if 'data' not in batch or key not in batch:
    raise ValueError(f'{where} lacks {key!r} or \'data\'')
  x = _images(batch['data'], where)
  y = np.asarray(batch[key], np.int32)
  if len(x) != len(y):
    raise ValueError(f'{where}: {len(x)} images but {len(y)} labels')
  return x, y


def _read_binary(data, dataset, labels, where):
  heads = 1 if dataset == 'cifar10' else 2
  size = heads + _PIXELS
  if len(data) % size:
    raise ValueError(f'{where}: {len(data)} bytes is not a whole number of '
                     f'{size}-byte records (truncated?)')
  records = np.frombuffer(data, np.uint8).reshape(-1, size)
  column = 0 if heads == 1 or labels == 'coarse' else 1
  return _images(records[:, heads:], where), records[:, column].astype(
      np.int32)


def read_cifar(path: str, labels: str = 'fine'):
  """{x_train, y_train, x_test, y_test} of an official CIFAR archive;
  `labels` picks CIFAR-100's 'fine' (100) or 'coarse' (20) classes."""
  if labels not in ('fine', 'coarse'):
    raise ValueError(f"data.labels={labels!r}: use 'fine' or 'coarse'")
  if not os.path.isfile(path):
    raise ValueError(f'archive {path!r} not found: set --config.data.path to '
                     + EXPECTED)
  try:
    with tarfile.open(path) as tar:
      members = {m.name.lstrip('./'): m for m in tar.getmembers()
                 if m.isfile()}
      found = _layout(members)
      if found is None:
        raise ValueError(f'{path} is not {EXPECTED} (no cifar-10-batches-py/'
                         'test_batch or the like inside)')
      dataset, fmt, top, train, test = found
      read = _read_python if fmt == 'python' else _read_binary
      out = {}
      for split, names in (('train', train), ('test', [test])):
        parts = []
        for name in names:
          member = members.get(f'{top}/{name}')
          if member is None:
            raise ValueError(f'{path} lacks {top}/{name}: is it complete?')
          parts.append(read(tar.extractfile(member).read(), dataset, labels,
                            f'{path}:{top}/{name}'))
        out[f'x_{split}'] = np.concatenate([p[0] for p in parts])
        out[f'y_{split}'] = np.concatenate([p[1] for p in parts])
  except (tarfile.TarError, EOFError, OSError) as e:
    raise ValueError(f'cannot read {path} as {EXPECTED} ({e}): is the file '
                     'complete?') from None
  out['dataset'] = dataset
  return out


def write_cifar(path: str, arrays, fmt: str = 'python',
                dataset: str = 'cifar10', coarse=None):
  """Write arrays {x_train, y_train, x_test, y_test} as an archive of the
  official layout (gzipped when `path` ends in .gz): small real archives for
  tests, or a subset in the format every CIFAR tool reads. CIFAR-100 takes
  its coarse labels from `coarse` ({'train': ..., 'test': ...}; default 0)."""
  top, train_names, test_name = LAYOUTS[(dataset, fmt)]
  chunks = np.array_split(np.arange(len(arrays['x_train'])), len(train_names))
  files = [(name, idx, 'train') for name, idx in zip(train_names, chunks)]
  files.append((test_name, np.arange(len(arrays['x_test'])), 'test'))
  coarse = coarse or {}
  with tarfile.open(path, 'w:gz' if path.endswith('gz') else 'w') as tar:
    for name, idx, split in files:
      images = arrays[f'x_{split}'][idx]
      fine = np.asarray(arrays[f'y_{split}'])[idx].astype(np.uint8)
      flat = images.transpose(0, 3, 1, 2).reshape(len(idx), _PIXELS)
      crs = np.asarray(coarse.get(split, np.zeros(len(arrays[
          f'y_{split}']))), np.uint8)[idx]
      if fmt == 'python':
        batch = {'data': flat.astype(np.uint8),
                 'filenames': [f'{i}.png' for i in idx]}
        if dataset == 'cifar10':
          batch['labels'] = fine.tolist()
        else:
          batch['fine_labels'], batch['coarse_labels'] = (
              fine.tolist(), crs.tolist())
        data = pickle.dumps(batch, protocol=2)
      else:
        heads = [fine[:, None]] if dataset == 'cifar10' else [
            crs[:, None], fine[:, None]]
        data = np.concatenate(heads + [flat], 1).astype(np.uint8).tobytes()
      info = tarfile.TarInfo(f'{top}/{name}')
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
    if fmt == 'binary':
      # tfds reads the class names from these when it prepares the dataset
      if dataset == 'cifar10':
        names = {'batches.meta.txt': CIFAR10_CLASSES}
      else:  # placeholders: the real names are in the real archive
        names = {'coarse_label_names.txt': [f'coarse{i}' for i in range(20)],
                 'fine_label_names.txt': [f'fine{i}' for i in range(100)]}
      for name, rows in names.items():
        meta = ('\n'.join(rows) + '\n').encode()
        info = tarfile.TarInfo(f'{top}/{name}')
        info.size = len(meta)
        tar.addfile(info, io.BytesIO(meta))
