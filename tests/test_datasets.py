"""Real datasets on a user's machine: the official CIFAR archives, the
validation splits, an ImageNet-style folder of JPEGs (grain workers), and
tfds's own preparation of cifar10 from an archive in the official format.
Every archive and folder here is made from the embedded real CIFAR images."""

import os
import pickle
import tarfile

import jax
import numpy as np
import pytest

from bossnax import parallel
from bossnax.data.archives import read_cifar, write_cifar
from bossnax.data.pipeline import Batches
from bossnax.data.sources import EMBEDDED, make_source, validation_split
from bossnax.data.splits import nats_split
from conftest import sample_archs, tiny_config, trainer


@pytest.fixture(scope='module')
def embedded():
  with np.load(EMBEDDED) as f:
    return {k: f[k] for k in f.files}


def _same(a, b):
  for k in ('x_train', 'y_train', 'x_test', 'y_test'):
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _data_cfg(**kw):
  c = tiny_config().data
  c.train_images = 0
  c.update(kw)
  return c


def one_step(config, source):
  """One block-0 training step on the source's first batch: the loss is
  finite (the same program as test_train's, so it compiles once)."""
  tr = trainer(config, image_shape=source.image_shape)
  batches = Batches(source, 'train', config.train.batch_size, seed=0,
                    workers=config.data.workers)
  x = batches.get_batch(0)['image']
  batches.close()
  state = tr.start_block(tr.init_state(0), 0)
  archs = sample_archs(tr, 0, 0, np.zeros(tr.space.num_layers, np.int32))
  _, metrics = tr.step_fn(0)(state, parallel.global_batch(
      tr.mesh, x[None], batch_axis=1), jax.random.key(0), archs, None)
  assert np.isfinite(float(metrics['loss']))


# -- the official archives ----------------------------------------------------

@pytest.mark.parametrize('fmt', ['python', 'binary'])
def test_cifar10_archive_round_trips(tmp_path, embedded, fmt):
  path = str(tmp_path / f'cifar-10-{fmt}.tar.gz')
  write_cifar(path, embedded, fmt)
  got = read_cifar(path)
  assert got.pop('dataset') == 'cifar10'
  _same(got, embedded)


def test_python_archive_is_the_official_layout(tmp_path, embedded):
  # Decoded the way every CIFAR loader does (latin1 pickles, planes to HWC),
  # independently of bossnax's reader.
  path = str(tmp_path / 'cifar-10-python.tar.gz')
  write_cifar(path, embedded, 'python')
  with tarfile.open(path) as tar:
    batch = pickle.load(tar.extractfile('cifar-10-batches-py/data_batch_1'),
                        encoding='latin1')
  x = batch['data'].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  n = len(x)
  np.testing.assert_array_equal(x, embedded['x_train'][:n])
  assert batch['labels'] == embedded['y_train'][:n].tolist()


@pytest.mark.parametrize('fmt', ['python', 'binary'])
def test_cifar100_archive_fine_and_coarse_labels(tmp_path, embedded, fmt):
  coarse = {s: embedded[f'y_{s}'] // 5 for s in ('train', 'test')}
  path = str(tmp_path / f'cifar-100-{fmt}.tar')
  write_cifar(path, embedded, fmt, 'cifar100', coarse)
  fine = read_cifar(path)
  assert fine.pop('dataset') == 'cifar100'
  _same(fine, embedded)
  c = read_cifar(path, 'coarse')
  np.testing.assert_array_equal(c['y_test'], coarse['test'])
  src = make_source(_data_cfg(source='archive', path=path, name='cifar100',
                              labels='coarse'))
  assert src.num_classes == 20


def test_archive_source_trains_one_step(tmp_path, embedded):
  path = str(tmp_path / 'cifar-10-python.tar.gz')
  write_cifar(path, embedded, 'python')
  c = tiny_config()
  c.data.source, c.data.path = 'archive', path
  src = make_source(c.data)  # the tiny preset's first 48 training images
  np.testing.assert_array_equal(src.get('train', np.arange(48))[0],
                                embedded['x_train'][:48])
  one_step(c, src)


def test_bad_archives_fail_with_one_line(tmp_path, embedded):
  good = str(tmp_path / 'cifar-10-binary.tar.gz')
  write_cifar(good, embedded, 'binary')
  cut = tmp_path / 'cut.tar.gz'
  cut.write_bytes(open(good, 'rb').read()[:100_000])
  other = str(tmp_path / 'other.tar')
  with tarfile.open(other, 'w') as tar:
    tar.add(__file__, arcname='notes.txt')
  cases = [(str(tmp_path / 'none.tar.gz'), 'not found'),
           (str(cut), 'complete'), (other, 'cifar-10-python.tar.gz')]
  for path, words in cases:
    with pytest.raises(ValueError, match=words) as e:
      make_source(_data_cfg(source='archive', path=path))
    assert '\n' not in str(e.value)
  with pytest.raises(ValueError, match='data.name=cifar10'):
    make_source(_data_cfg(source='archive', path=good, name='cifar100'))
  with tarfile.open(str(tmp_path / 'evil.tar'), 'w') as tar:
    import io
    data = pickle.dumps(os.system)  # a pickle that would call code
    for name in ('data_batch_1', 'test_batch'):
      info = tarfile.TarInfo(f'cifar-10-batches-py/{name}')
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  with pytest.raises(ValueError, match='not a CIFAR python batch'):
    read_cifar(str(tmp_path / 'evil.tar'))


# -- validation splits --------------------------------------------------------

def test_nats_splits_are_the_published_ones():
  from bossnax.data.sources import SyntheticSource
  c10 = nats_split(SyntheticSource('c', (50_000, 10_000), 8, 10), 'cifar10')
  assert [c10.num_examples(s) for s in ('train', 'val', 'test')] == [
      25_000, 25_000, 10_000]
  train, val = c10._splits['train'][1], c10._splits['val'][1]
  assert not set(train) & set(val)
  # the first members of cifar-split.txt's lists
  assert val[:5].tolist() == [1, 2, 3, 4, 6]
  assert train[:5].tolist() == [0, 5, 7, 11, 13]
  c100 = nats_split(SyntheticSource('c', (50_000, 10_000), 8, 100),
                    'cifar100')
  assert [c100.num_examples(s) for s in ('train', 'val', 'test')] == [
      50_000, 5_000, 5_000]
  assert c100._splits['val'] == ('test', c100._splits['val'][1])
  assert c100._splits['val'][1][:5].tolist() == [1, 3, 4, 5, 8]
  with pytest.raises(ValueError, match='official order'):
    make_source(_data_cfg(source='embedded', nats_split=True))


def test_holdout_per_class_is_balanced_seeded_and_disjoint():
  cfg = _data_cfg(source='embedded', holdout_per_class=20)
  a, b = make_source(cfg, seed=1), make_source(cfg, seed=1)
  other = make_source(cfg, seed=2)
  assert validation_split(a) == 'val'
  assert np.bincount(a.labels('val')).tolist() == [20] * 10
  assert a.num_examples('train') == 2000 - 200
  val, train = a._splits['val'][1], a._splits['train'][1]
  assert not set(val) & set(train) and len(set(val) | set(train)) == 2000
  np.testing.assert_array_equal(val, b._splits['val'][1])
  assert not np.array_equal(val, other._splits['val'][1])
  x, y = a.get('val', [0, 1])  # the images are the training images held out
  base = make_source(_data_cfg(source='embedded'))
  np.testing.assert_array_equal(x, base.get('train', val[:2])[0])
  frac = make_source(_data_cfg(source='embedded', holdout_fraction=0.1))
  assert frac.num_examples('val') == 200
  assert validation_split(base) == 'test'
  with pytest.raises(ValueError, match='set one of'):
    make_source(_data_cfg(source='embedded', holdout_fraction=0.1,
                          holdout_per_class=3))


def test_the_search_validates_on_the_held_out_images(tmp_path):
  from bossnax.run import Run
  c = tiny_config()
  c.data.holdout_fraction = 0.5  # 24 of the preset's 48 images
  c.search.num_images = 16
  run = Run(c, str(tmp_path), write_metrics=False)
  try:
    val = run.search_images()[0]
  finally:
    run.close()
  want = run.source.get('val', np.arange(16))[0]
  np.testing.assert_array_equal(val, want)


# -- an ImageNet-style folder -------------------------------------------------

@pytest.fixture(scope='module')
def folder(tmp_path_factory, embedded):
  """DIR/{train,val}/class{c}/*.JPEG: real CIFAR images at 64x64."""
  from PIL import Image
  root = tmp_path_factory.mktemp('imagenet_like')
  for split, x, y, n in (('train', embedded['x_train'], embedded['y_train'],
                          4), ('val', embedded['x_test'], embedded['y_test'],
                               2)):
    for c in range(10):
      os.makedirs(root / split / f'class{c}')
      for j, i in enumerate(np.flatnonzero(y == c)[:n]):
        Image.fromarray(x[i]).resize((64, 64), Image.BICUBIC).save(
            root / split / f'class{c}' / f'img{j}.JPEG', quality=90)
  return str(root)


def test_folder_source_lists_crops_and_trains(folder):
  c = tiny_config()
  c.data.source, c.data.path, c.data.train_crop = 'folder', folder, 'rrc'
  src = make_source(c.data)
  assert (src.num_examples('train'), src.num_examples('test')) == (40, 20)
  assert src.labels('train').tolist() == sorted(list(range(10)) * 4)
  x, y = src.get('test', [0, 19])
  assert x.shape == (2, 32, 32, 3) and x.dtype == np.uint8
  assert y.tolist() == [0, 9]
  # a random crop is a function of (seed, step, index)
  a, b = src.get('train', [3, 5], draw=7)[0], src.get('train', [3, 5],
                                                        draw=7)[0]
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, src.get('train', [3, 5], draw=8)[0])
  other_seed = make_source(c.data, seed=1)
  assert not np.array_equal(a, other_seed.get('train', [3, 5], draw=7)[0])
  one_step(c, src)


def test_grain_workers_give_the_same_batches_and_resume(folder):
  src = make_source(_data_cfg(source='folder', path=folder, train_crop='rrc'))
  here = Batches(src, 'train', 8, seed=1)
  workers = Batches(src, 'train', 8, seed=1, workers=2)
  try:
    for step in (0, 1, 2, 9, 10, 4):  # a jump restarts the workers there
      want, got = here.get_batch(step), workers.get_batch(step)
      np.testing.assert_array_equal(got['image'], want['image'])
      np.testing.assert_array_equal(got['label'], want['label'])
  finally:
    workers.close()
  # each of two processes reads its half of the same global batch
  halves = [Batches(src, 'train', 8, seed=1, process_index=i,
                    process_count=2).get_batch(9)['image'] for i in (0, 1)]
  np.testing.assert_array_equal(np.concatenate(halves),
                                here.get_batch(9)['image'])


def test_bad_folders_fail_with_one_line(tmp_path, folder):
  import shutil
  cases = []
  (tmp_path / 'empty').mkdir()
  cases.append((str(tmp_path / 'empty'), 'train is missing'))
  odd = tmp_path / 'odd'
  shutil.copytree(folder, odd)
  os.makedirs(odd / 'val' / 'zebra')
  cases.append((str(odd), 'classes that'))
  for path, words in cases:
    with pytest.raises(ValueError, match=words) as e:
      make_source(_data_cfg(source='folder', path=path))
    assert '\n' not in str(e.value)
  broken = tmp_path / 'broken'
  shutil.copytree(folder, broken)
  (broken / 'train' / 'class0' / 'img0.JPEG').write_bytes(b'not a jpeg')
  src = make_source(_data_cfg(source='folder', path=str(broken)))
  with pytest.raises(ValueError, match='cannot decode .*img0.JPEG'):
    src.get('train', [0])


# -- tfds: its own preparation, offline ---------------------------------------

def test_tfds_prepares_cifar10_from_the_official_archive(tmp_path, embedded,
                                                         monkeypatch):
  pytest.importorskip('tensorflow', reason='requirements-tfds.txt')
  import tensorflow_datasets as tfds
  from tensorflow_datasets.image_classification import cifar
  manual = tmp_path / 'manual'
  manual.mkdir()
  archive = manual / 'cifar-10-binary.tar.gz'  # the file tfds downloads
  write_cifar(str(archive), embedded, 'binary')
  # tfds checks the archive against the real one's checksum; this one is a
  # 2,500-image subset, so the test registers its checksum instead.
  url = next(u for u in cifar.Cifar10.url_infos if 'binary' in u)
  monkeypatch.setattr(cifar.Cifar10, 'url_infos', {
      url: tfds.download.checksums.compute_url_info(archive)})
  c = tiny_config()
  c.data.source, c.data.data_dir = 'tfds', str(tmp_path / 'tfds')
  c.data.manual_dir, c.data.download = str(manual), False
  c.data.train_images = 0
  src = make_source(c.data)
  # tfds's own reader of the binary format gives the embedded images back,
  # in the archive's order
  _same({k: v for k, v in zip(
      ('x_train', 'y_train', 'x_test', 'y_test'),
      (*src.get('train', np.arange(2000)),
       *src.get('test', np.arange(500))))}, embedded)
  one_step(c, src)
  # The lazy reader of tfds imagenet2012 (decodes on request, host crops,
  # grain workers), tried on this prepared dataset: its labels come without
  # decoding, it holds out per class, and workers give the same batches.
  from bossnax.data.sources import lazy_tfds_source
  from bossnax.data.splits import holdout
  c.data.train_crop = 'rrc'
  builder = tfds.builder('cifar10', data_dir=c.data.data_dir,
                         file_format='array_record')
  lazy = lazy_tfds_source(builder, c.data)
  # the run's seed reaches the random crops
  other = lazy_tfds_source(builder, c.data, seed=1)
  assert not np.array_equal(lazy.get('train', [0, 1], draw=3)[0],
                            other.get('train', [0, 1], draw=3)[0])
  assert np.bincount(lazy.labels('train')).tolist() == np.bincount(
      embedded['y_train']).tolist()
  held = holdout(lazy, per_class=5, seed=0)
  assert np.bincount(held.labels('val')).tolist() == [5] * 10
  here = Batches(held, 'train', 8, seed=0)
  workers = Batches(held, 'train', 8, seed=0, workers=2)
  try:
    for step in (0, 1, 7):
      np.testing.assert_array_equal(workers.get_batch(step)['image'],
                                    here.get_batch(step)['image'])
  finally:
    workers.close()


def test_a_bad_dataset_stops_the_cli_before_the_workdir_changes(
    tmp_path, capsys):
  from bossnax import main
  workdir = tmp_path / 'run'
  workdir.mkdir()
  (workdir / 'metrics.jsonl').write_text('{"step": 1}\n')  # an earlier run's
  before = sorted(p.name for p in workdir.iterdir())
  from conftest import ROOT
  rc = main.main([f'--config={ROOT}/configs/nats_cifar10.py:tiny',
                  '--config.data.source=archive',
                  f'--config.data.path={tmp_path / "cifar-10-python.tar.gz"}',
                  f'--workdir={workdir}'])
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2 and len(err) == 1 and 'not found' in err[0], err
  assert sorted(p.name for p in workdir.iterdir()) == before
  assert (workdir / 'metrics.jsonl').read_text() == '{"step": 1}\n'


def _tar(path, members):
  import io
  with tarfile.open(path, 'w') as tar:
    for name, data in members:
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))


def test_tfds_prepares_imagenet2012_from_the_manual_tars(tmp_path, embedded):
  pytest.importorskip('tensorflow', reason='requirements-tfds.txt')
  import io
  from PIL import Image
  # ILSVRC2012_img_train.tar (one tar per synset) and ILSVRC2012_img_val.tar
  # as ImageNet distributes them, with real CIFAR images at 64x64 inside.
  def jpeg(i, split):
    out = io.BytesIO()
    Image.fromarray(embedded[f'x_{split}'][i]).resize((64, 48)).save(
        out, 'JPEG', quality=90)
    return out.getvalue()
  wnids = ['n01440764', 'n01443537', 'n01484850']  # ImageNet classes 0-2
  manual = tmp_path / 'manual'
  manual.mkdir()
  inner = []
  for c, wnid in enumerate(wnids):
    _tar(tmp_path / f'{wnid}.tar', [(f'{wnid}_{j}.JPEG', jpeg(c * 6 + j,
                                                              'train'))
                                     for j in range(6)])
    inner.append((f'{wnid}.tar', (tmp_path / f'{wnid}.tar').read_bytes()))
  _tar(manual / 'ILSVRC2012_img_train.tar', inner)
  _tar(manual / 'ILSVRC2012_img_val.tar', [
      (f'ILSVRC2012_val_{i:08d}.JPEG', jpeg(i, 'test')) for i in range(1, 9)])
  c = tiny_config()
  c.data.update(source='tfds', name='imagenet2012', train_images=0,
                data_dir=str(tmp_path / 'tfds'), manual_dir=str(manual),
                test_split='validation', download=False)
  src = make_source(c.data)
  assert (src.num_examples('train'), src.num_examples('test')) == (18, 8)
  assert sorted(src.labels('train').tolist()) == sorted([0, 1, 2] * 6)
  x, _ = src.get('test', [0, 7])
  assert x.shape == (2, 32, 32, 3) and x.dtype == np.uint8
  one_step(c, src)
