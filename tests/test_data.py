"""Data sources, deterministic per-host batches, on-device augmentations."""

import colorsys
import io
import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bossnax.config import load_config_file
from bossnax.data import augment, sources
from bossnax.data.pipeline import Batches, prefetch
from bossnax.data.sources import EMBEDDED, ArraySource, make_source
from conftest import ROOT

try:
  import tensorflow_datasets as tfds
except ImportError:  # the tfds tests skip
  tfds = None


def _config():
  return load_config_file(str(ROOT / 'configs' / 'nats_cifar10.py'))


def _cfg(**kw):
  c = _config().data
  c.update(kw)
  return c


def _aug(**kw):
  c = _config().augment
  c.update(kw)
  return c


# -- sources ----------------------------------------------------------------------------
def test_embedded_real_images(caplog):
  assert os.path.getsize(EMBEDDED) <= 8 * 1024 * 1024
  with caplog.at_level(logging.INFO, 'bossnax'):
    src = make_source(_cfg(source='embedded'))
  assert 'embedded real CIFAR-10 subset of 2000 train' in caplog.text
  assert 'source=tfds' in caplog.text
  assert src.num_examples('train') == 2000 and src.num_examples('test') == 500
  assert src.num_classes == 10 and src.image_shape == (32, 32, 3)
  x, y = src.get('train', np.arange(10))
  assert x.dtype == np.uint8 and x.shape == (10, 32, 32, 3)
  assert y.dtype == np.int32
  assert set(np.bincount(src.get('train', np.arange(2000))[1])) == {200}
  assert set(np.bincount(src.get('test', np.arange(500))[1])) == {50}
  assert x.std() > 20  # real pictures, not a constant


def test_train_images_and_image_size():
  src = make_source(_cfg(source='embedded', train_images=64, image_size=16))
  assert src.num_examples('train') == 64 and src.image_shape == (16, 16, 3)
  full = make_source(_cfg(source='embedded'))
  x16, _ = src.get('train', np.arange(2))
  x32, _ = full.get('train', np.arange(2))
  pooled = x32.reshape(2, 16, 2, 16, 2, 3).astype(float).mean((2, 4))
  np.testing.assert_array_equal(x16, pooled.round())
  odd = make_source(_cfg(source='embedded', train_images=4, image_size=24))
  assert odd.get('test', np.arange(3))[0].shape == (3, 24, 24, 3)


def test_npz_errors_are_one_line(tmp_path):
  def err(match, **kw):
    with pytest.raises(ValueError, match=match) as e:
      make_source(_cfg(**kw))
    assert '\n' not in str(e.value)
  err('not found: set --config.data.path', source='npz',
      path=str(tmp_path / 'none.npz'))
  bad = tmp_path / 'bad.npz'
  np.savez(bad, x_train=np.zeros((4, 32, 32, 3), np.uint8))
  err(f'{bad} lacks y_train, x_test, y_test', source='npz', path=str(bad))
  x, y = np.zeros((4, 8, 8, 3), np.uint8), np.zeros(4, np.int64)
  np.savez(bad, x_train=x.astype(np.float32), y_train=y, x_test=x, y_test=y)
  err(r'x_train must be uint8 \[N, H, W, 3\], got float32', source='npz',
      path=str(bad))
  np.savez(bad, x_train=x, y_train=y[:3], x_test=x, y_test=y)
  err('x_train has 4 images but y_train 3 labels', source='npz',
      path=str(bad))
  (tmp_path / 'junk.npz').write_text('not a zip')
  err('cannot read npz dataset', source='npz', path=str(tmp_path / 'junk.npz'))
  err("unknown data.source 'imagenet'", source='imagenet')


def test_npz_source(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.integers(0, 255, (6, 8, 8, 3), np.uint8)
  np.savez(tmp_path / 'd.npz', x_train=x, y_train=np.arange(6),
           x_test=x[:2], y_test=np.array([0, 6]))
  src = make_source(_cfg(source='npz', path=str(tmp_path / 'd.npz'),
                         image_size=0))
  assert src.num_classes == 7 and src.image_shape == (8, 8, 3)
  got, labels = src.get('train', np.array([4, 1]))
  np.testing.assert_array_equal(got, x[[4, 1]])
  np.testing.assert_array_equal(labels, [4, 1])


# -- tfds (tiny builders prepared here: PNG/JPEG bytes need no TensorFlow) ---------------
def _encoded(shape, seed, fmt):
  from PIL import Image
  buf = io.BytesIO()
  img = np.random.default_rng(seed).integers(0, 255, shape, np.uint8)
  Image.fromarray(img).save(buf, format=fmt)
  return buf.getvalue()


if tfds is not None:

  class BossnaxTestFixed(tfds.core.GeneratorBasedBuilder):
    """8x8 PNG images, 3 classes: small and fixed, so held in memory."""
    VERSION = tfds.core.Version('1.0.0')

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          'image': tfds.features.Image(shape=(8, 8, 3), encoding_format='png'),
          'label': tfds.features.ClassLabel(num_classes=3)}))

    def _split_generators(self, _):
      return {'train': self._generate_examples(12),
              'test': self._generate_examples(6)}

    def _generate_examples(self, n):
      for i in range(n):
        yield i, {'image': _encoded((8, 8, 3), i, 'PNG'), 'label': i % 3}

  class BossnaxTestVaried(tfds.core.GeneratorBasedBuilder):
    """JPEG images of varying size (like ImageNet): read lazily."""
    VERSION = tfds.core.Version('1.0.0')

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          'image': tfds.features.Image(encoding_format='jpeg'),
          'label': tfds.features.ClassLabel(num_classes=5)}))

    def _split_generators(self, _):
      return {'train': self._generate_examples(10),
              'validation': self._generate_examples(4)}

    def _generate_examples(self, n):
      for i in range(n):
        yield i, {'image': _encoded((20 + 3 * i, 31, 3), i, 'JPEG'),
                  'label': i % 5}


@pytest.fixture(scope='module')
def tfds_dir(tmp_path_factory):
  if tfds is None:
    pytest.skip('tensorflow-datasets is not installed')
  root = str(tmp_path_factory.mktemp('tfds'))
  for name in ('bossnax_test_fixed', 'bossnax_test_varied'):
    tfds.builder(name, data_dir=root, file_format='array_record'
                 ).download_and_prepare()
  return root


def test_tfds_small_dataset_in_memory(tfds_dir):
  src = make_source(_cfg(source='tfds', name='bossnax_test_fixed',
                         data_dir=tfds_dir, image_size=8))
  assert isinstance(src, ArraySource)
  assert src.num_examples('train') == 12 and src.num_examples('test') == 6
  assert src.num_classes == 3 and src.image_shape == (8, 8, 3)
  x, y = src.get('train', np.arange(12))
  assert x.dtype == np.uint8 and sorted(y) == [0, 1, 2] * 4
  # PNG is lossless: every stored image comes back exactly
  stored = {_encoded((8, 8, 3), i, 'PNG') for i in range(12)}
  from PIL import Image
  for img in x:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format='PNG')
    assert buf.getvalue() in stored


def test_tfds_large_dataset_is_lazy_and_resized(tfds_dir):
  src = make_source(_cfg(source='tfds', name='bossnax_test_varied',
                         data_dir=tfds_dir, image_size=12,
                         test_split='validation'))
  assert isinstance(src, sources.TfdsSource)
  assert src.num_examples('train') == 10 and src.num_examples('test') == 4
  x, y = src.get('train', np.array([3, 0, 9]))
  assert x.shape == (3, 12, 12, 3) and x.dtype == np.uint8
  assert y.dtype == np.int32 and src.num_classes == 5
  with pytest.raises(ValueError, match="no split 'test'.*test_split"):
    make_source(_cfg(source='tfds', name='bossnax_test_varied',
                     data_dir=tfds_dir, image_size=12))


def _one_line_error(**kw):
  with pytest.raises(ValueError) as e:
    make_source(_cfg(source='tfds', **kw))
  msg = str(e.value)
  assert '\n' not in msg
  return msg


def test_tfds_missing_dataset_says_where_to_put_it(tmp_path, monkeypatch):
  if tfds is None:
    pytest.skip('tensorflow-datasets is not installed')
  t = time.time()
  msg = _one_line_error(name='cifar10', data_dir=str(tmp_path),
                        download=False)
  assert f'cifar10 is not prepared in {tmp_path}' in msg
  assert "download_and_prepare(file_format='array_record')" in msg
  assert '--config.data.source=npz --config.data.path=FILE.npz' in msg
  msg = _one_line_error(name='imagenet2012', data_dir=str(tmp_path),
                        download=True, image_size=224)
  assert (f'ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in '
          f'{tmp_path}/downloads/manual/') in msg
  assert 'unknown tfds dataset' in _one_line_error(name='cifar1O')
  # A download that fails (no network here) ends in the same hint, at once.
  def offline(*a, **k):
    raise OSError('Failed to resolve www.cs.toronto.edu\nretrying')
  monkeypatch.setattr(sources, '_can_prepare', lambda: True)
  monkeypatch.setattr(tfds.core.DatasetBuilder, 'download_and_prepare',
                      offline)
  msg = _one_line_error(name='cifar100', data_dir=str(tmp_path),
                        download=True)
  assert 'cifar100 is not prepared' in msg
  assert msg.endswith('(download failed: Failed to resolve '
                      'www.cs.toronto.edu)')
  assert time.time() - t < 10


# -- batches ----------------------------------------------------------------------------
@pytest.fixture(scope='module')
def embedded():
  return make_source(_cfg(source='embedded'))


def test_batches_are_deterministic_and_resumable(embedded):
  a = Batches(embedded, 'train', 64, seed=3)
  assert a.steps_per_epoch == 31
  for step in (40, 0, 5, 31, 30):  # any order, across an epoch boundary
    b = Batches(embedded, 'train', 64, seed=3)  # a fresh, resumed instance
    ba, bb = a.get_batch(step), b.get_batch(step)
    np.testing.assert_array_equal(ba['image'], bb['image'])
    np.testing.assert_array_equal(ba['label'], bb['label'])
    assert ba['image'].shape == (64, 32, 32, 3) and ba['label'].dtype == np.int32
  assert not np.array_equal(a.indices(0), a.indices(31))  # new epoch order
  assert not np.array_equal(a.indices(0),
                            Batches(embedded, 'train', 64, seed=4).indices(0))
  epoch = np.concatenate([a.indices(s) for s in range(31, 62)])
  assert len(np.unique(epoch)) == 31 * 64  # no image twice in an epoch


def test_process_slices_tile_the_global_batch(embedded):
  whole = Batches(embedded, 'train', 64, seed=3)
  parts = [Batches(embedded, 'train', 64, seed=3, process_index=i,
                   process_count=4) for i in range(4)]
  assert all(p.steps_per_epoch == whole.steps_per_epoch for p in parts)
  for step in (7, 33):
    got = [p.get_batch(step) for p in parts]
    assert got[0]['image'].shape == (16, 32, 32, 3)
    np.testing.assert_array_equal(
        np.concatenate([g['image'] for g in got]),
        whole.get_batch(step)['image'])


def test_batches_keep_the_remainder_with_a_mask(embedded):
  b = Batches(embedded, 'test', 192, seed=0, process_index=1,
              process_count=2, drop_remainder=False)
  assert b.steps_per_epoch == 3  # 500 = 2 * 192 + 116
  last = b.get_batch(2)
  assert last['image'].shape == (96, 32, 32, 3)
  assert last['mask'].sum() == 116 - 96  # process 1 holds 20 of the 116
  seen = np.concatenate([
      Batches(embedded, 'test', 192, seed=0, process_index=p,
              process_count=2, drop_remainder=False).indices(s)[
                  Batches(embedded, 'test', 192, seed=0, process_index=p,
                          process_count=2, drop_remainder=False
                          ).get_batch(s)['mask']]
      for s in range(3) for p in range(2)])
  assert sorted(seen) == list(range(500))  # every image exactly once


def test_batch_errors(embedded):
  with pytest.raises(ValueError, match='larger than the 2000 train'):
    Batches(embedded, 'train', 4096, seed=0)
  with pytest.raises(ValueError, match='does not split over 3 processes'):
    Batches(embedded, 'train', 64, seed=0, process_count=3)


def test_prefetch_keeps_order_and_errors():
  loaded = []
  def load(s):
    loaded.append(s)
    return s * s
  assert list(prefetch(load, range(5))) == [(s, s * s) for s in range(5)]
  it = prefetch(load, iter(range(10**9)), size=3)  # endless steps
  assert [next(it) for _ in range(4)] == [(s, s * s) for s in range(4)]
  it.close()
  def broken(s):
    if s == 2:
      raise RuntimeError('bad batch 2')
    return s
  with pytest.raises(RuntimeError, match='bad batch 2'):
    list(prefetch(broken, range(5)))


# -- augmentations ----------------------------------------------------------------------
def _images(n=4, size=32, seed=0):
  return np.random.default_rng(seed).integers(0, 255, (n, size, size, 3),
                                              np.uint8)


def test_crop_flip_is_a_window_of_the_padded_image():
  x = _images(16, 8)
  out = np.asarray(jax.jit(augment.random_crop_flip, static_argnums=2)(
      jax.random.key(1), x, 2))
  assert out.dtype == np.uint8 and out.shape == x.shape
  padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
  found = set()
  for i in range(16):
    hits = [(dy, dx, f) for dy in range(5) for dx in range(5)
            for f in (False, True)
            if np.array_equal(out[i], padded[i, dy:dy + 8, dx:dx + 8][
                :, ::-1 if f else 1])]
    assert hits, f'example {i} is not a window of its padded image'
    found.add(hits[0])
  assert len(found) > 4 and {f for *_, f in found} == {False, True}
  same = augment.random_crop_flip(jax.random.key(1), x, 2)
  np.testing.assert_array_equal(out, same)  # jit or not, same key, same crop


def test_random_resized_crop():
  x = _images(3, 16)
  full = augment.random_resized_crop(jax.random.key(0), x, 16,
                                     scale=(1, 1), ratio=(1, 1))
  np.testing.assert_allclose(full, x.astype(np.float32), atol=1e-3)
  out = jax.jit(augment.random_resized_crop, static_argnums=2)(
      jax.random.key(0), x, (12, 10))
  assert out.shape == (3, 12, 10, 3) and out.dtype == jnp.float32
  assert float(out.min()) >= -1e-3 and float(out.max()) <= 255 + 1e-3


def test_hsv_matches_colorsys():
  px = np.random.default_rng(0).random((64, 3)).astype(np.float32)
  hsv = np.asarray(augment.rgb_to_hsv(jnp.asarray(px)))
  np.testing.assert_allclose(
      hsv, [colorsys.rgb_to_hsv(*p) for p in px], atol=1e-5)
  np.testing.assert_allclose(augment.hsv_to_rgb(jnp.asarray(hsv)), px,
                             atol=1e-5)


def test_eval_view_and_per_view_probabilities():
  x = _images(2, 8)
  mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
  plain = augment.eval_view(x, mean, std)
  np.testing.assert_allclose(plain, (x / 255.0 - mean) / std, rtol=1e-5)
  # BYOL solarises only the second view: probabilities (0, 1) here
  fn = augment.make_view_fn(_aug(ops='solarize', mean=mean, std=std,
                                 solarize_prob=(0.0, 1.0)))
  v1, v2 = fn(jax.random.key(0), x)
  np.testing.assert_allclose(v1, plain, rtol=1e-6)
  sol = np.where(x / 255.0 < 0.5, x / 255.0, 1 - x / 255.0)
  np.testing.assert_allclose(v2, (sol - mean) / std, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('ops', ['crop_flip',
                                 'rrc,flip,color,gray,blur,solarize'])
def test_views_are_fixed_by_the_key(ops):
  fn = jax.jit(augment.make_view_fn(_aug(ops=ops)))
  x = _images(4, 16)
  v1, v2 = fn(jax.random.key(0), x)
  w1, w2 = fn(jax.random.key(0), x)
  u1, _ = fn(jax.random.key(1), x)
  assert v1.dtype == jnp.float32 and v1.shape == (4, 16, 16, 3)
  assert np.isfinite(np.asarray(v1)).all()
  np.testing.assert_array_equal(v1, w1)
  np.testing.assert_array_equal(v2, w2)
  assert not np.array_equal(v1, u1) and not np.array_equal(v1, v2)


def test_unknown_augmentation():
  with pytest.raises(ValueError, match="unknown augmentation 'jitter'") as e:
    augment.make_view_fn(_aug(ops='crop_flip,jitter'))
  assert 'crop_flip, rrc, flip, color, gray, blur, solarize' in str(e.value)
  assert '\n' not in str(e.value)
