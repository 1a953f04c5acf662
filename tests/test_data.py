"""Data sources, deterministic per-host batches, on-device augmentations."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bossnax.data import augment
from bossnax.data.pipeline import Batches
from bossnax.data.sources import EMBEDDED, make_source
from conftest import tiny_config


def _cfg(**kw):
  c = tiny_config().data
  c.train_images = 0
  c.update(kw)
  return c


def test_embedded_real_images():
  assert os.path.getsize(EMBEDDED) <= 8 * 1024 * 1024
  src = make_source(_cfg(source='embedded'))
  assert src.num_examples('train') == 2000 and src.num_examples('test') == 500
  x, y = src.get('train', np.arange(10))
  assert x.dtype == np.uint8 and x.shape == (10, 32, 32, 3)
  assert set(np.bincount(src.get('train', np.arange(2000))[1])) == {200}
  assert x.std() > 20  # real pictures, not a constant


def test_npz_errors_are_one_line(tmp_path):
  with pytest.raises(ValueError, match='not found: set --config.data.path'):
    make_source(_cfg(source='npz', path=str(tmp_path / 'none.npz')))
  np.savez(tmp_path / 'bad.npz', x_train=np.zeros((4, 32, 32, 3), np.uint8))
  with pytest.raises(ValueError, match='lacks y_train, x_test, y_test'):
    make_source(_cfg(source='npz', path=str(tmp_path / 'bad.npz')))
  with pytest.raises(ValueError, match="unknown data.source 'imagenet'"):
    make_source(_cfg(source='imagenet'))


def test_synthetic_source_has_full_size_and_repeats_itself():
  src = make_source(_cfg(source='synthetic', name='cifar10', image_size=16,
                         train_images=0))
  assert (src.num_examples('train'), src.num_examples('test')) == (50_000,
                                                                   10_000)
  x, y = src.get('train', np.arange(100, 164))
  assert x.dtype == np.uint8 and x.shape == (64, 16, 16, 3) and x.std() > 50
  np.testing.assert_array_equal(x, src.get('train', np.arange(100, 164))[0])
  assert not np.array_equal(x, src.get('test', np.arange(100, 164))[0])
  assert y.min() >= 0 and y.max() < 10
  big = make_source(_cfg(source='synthetic', name='imagenet2012',
                         image_size=224, train_images=0))
  assert big.num_examples('train') == 1_281_167  # made on demand, not held
  with pytest.raises(ValueError, match='set data.name to one of'):
    make_source(_cfg(source='synthetic', name='mnist'))


def test_tfds_offline_error_says_where_to_put_the_data(tmp_path):
  pytest.importorskip('tensorflow_datasets')
  with pytest.raises(ValueError) as e:
    make_source(_cfg(source='tfds', data_dir=str(tmp_path), download=False))
  msg = str(e.value)
  assert '\n' not in msg and 'data.manual_dir' in msg
  assert 'source=archive' in msg


def test_batches_are_deterministic_and_tile_over_processes():
  src = make_source(_cfg(source='embedded'))
  a = Batches(src, 'train', 64, seed=3)
  b = Batches(src, 'train', 64, seed=3)
  assert a.steps_per_epoch == 31
  for step in (0, 5, 31, 40):  # across an epoch boundary too
    np.testing.assert_array_equal(a.indices(step), b.indices(step))
  assert not np.array_equal(a.indices(0), a.indices(31))
  parts = [Batches(src, 'train', 64, seed=3, process_index=i,
                   process_count=4).indices(7) for i in range(4)]
  np.testing.assert_array_equal(np.concatenate(parts), a.indices(7))
  with pytest.raises(ValueError, match='larger than the 2000'):
    Batches(src, 'train', 4096, seed=0)


class _Recording:
  """A source whose images say which index and draw made them."""

  def __init__(self, n=600):
    self.n, self.draws = n, []

  def num_examples(self, split):
    return self.n

  def get(self, split, indices, draw=None):
    self.draws.append(draw)
    idx = np.asarray(indices)
    return (np.stack([idx, np.full_like(idx, draw)], 1),
            idx % 10)


def test_repeated_augmentation_batches():
  """DeiT's sampler (train.repeated_aug=3): the epoch's order with each
  image three times in a row, cut into batches (a batch not divisible by
  3 splits an image's copies over two steps); each copy loaded with its own
  draw (host crops differ); an epoch keeps its steps and sees a third of the
  images; processes tile the batch."""
  src = _Recording()
  for batch in (60, 64):
    plain = Batches(src, 'train', batch, seed=5)
    ra = Batches(src, 'train', batch, seed=5, repeats=3)
    steps = ra.steps_per_epoch
    assert steps == plain.steps_per_epoch == 600 // batch
    order = np.concatenate([plain.indices(s) for s in range(steps)])
    stream = np.concatenate([ra.indices(s) for s in range(steps)])
    np.testing.assert_array_equal(stream, np.repeat(order, 3)[:len(stream)])
    assert len(set(stream)) == -(-steps * batch // 3)  # a third, r times
  ra = Batches(src, 'train', 60, seed=5, repeats=3)
  loaded = ra.load(4)
  np.testing.assert_array_equal(loaded['image'][:, 0], ra.indices(4))
  draws = loaded['image'][:, 1].reshape(20, 3)
  np.testing.assert_array_equal(draws, np.tile([12, 13, 14], (20, 1)))
  np.testing.assert_array_equal(loaded['label'], ra.indices(4) % 10)
  parts = [Batches(src, 'train', 60, seed=5, repeats=3, process_index=i,
                   process_count=4).load(4)['image'] for i in range(4)]
  np.testing.assert_array_equal(np.concatenate(parts), loaded['image'])
  assert Batches(src, 'train', 60, seed=5).load(4)['image'][0, 1] == 4
  with pytest.raises(ValueError, match='repeated_aug=0'):
    Batches(src, 'train', 60, seed=5, repeats=0)


def test_crop_flip_is_a_window_of_the_padded_image():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 255, (6, 8, 8, 3), np.uint8)
  out = np.asarray(jax.jit(augment._per_example(augment._crop_flip),
                           static_argnums=2)(jax.random.key(1),
                                             jnp.asarray(x, jnp.float32), 2))
  padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0))).astype(np.float32)
  for i in range(6):
    windows = [padded[i, dy:dy + 8, dx:dx + 8] for dy in range(5)
               for dx in range(5)]
    windows += [w[:, ::-1] for w in windows]
    assert any(np.array_equal(out[i], w) for w in windows)


@pytest.mark.parametrize('ops', ['crop_flip', 'rrc,flip,color,gray,blur,solarize'])
def test_views_are_fixed_by_the_key(ops):
  c = tiny_config().augment
  c.ops = ops
  fn = jax.jit(augment.make_view_fn(c))
  x = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), np.uint8)
  v1, v2 = fn(jax.random.key(0), x)
  w1, _ = fn(jax.random.key(0), x)
  u1, _ = fn(jax.random.key(1), x)
  assert v1.dtype == jnp.float32 and v1.shape == (4, 32, 32, 3)
  np.testing.assert_array_equal(v1, w1)
  assert not np.array_equal(v1, u1) and not np.array_equal(v1, v2)


def test_unknown_augmentation():
  c = tiny_config().augment
  c.ops = 'crop_flip,jitter'
  with pytest.raises(ValueError, match="unknown augmentation 'jitter'"):
    augment.make_view_fn(c)
