"""Retraining one architecture: the recipe's pure pieces against hand
computations, the CLI end to end, resume == uninterrupted, and a sharded
step == a single-device step."""

import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bossnax import parallel, retrain
from bossnax.config import load_config_file
from bossnax.data.augment import cutmix_box, mix_batch
from bossnax.retrain import Retrain, lr_schedule, prune_unused, topk_correct
from conftest import ROOT

CONFIG = str(ROOT / 'configs' / 'retrain_hytra.py')


def tiny_config(**eval_kw):
  c = load_config_file(CONFIG + ':tiny')
  c.eval.update(eval_kw)
  return c


# -- pure pieces ----------------------------------------------------------------

def test_cutmix_box_size_by_hand():
  lam = 0.75  # a box of side 32 * sqrt(1 - 0.75) = 16, clipped at borders
  for i in range(20):
    y0, y1, x0, x1 = map(int, cutmix_box(jax.random.key(i), lam, 32, 32))
    assert 0 <= y0 <= y1 <= 32 and 0 <= x0 <= x1 <= 32
    assert y1 - y0 <= 16 and x1 - x0 <= 16
    if 0 < y0 and y1 < 32:
      assert y1 - y0 == 16
    if 0 < x0 and x1 < 32:
      assert x1 - x0 == 16


def _const_batch(b=4, h=8, w=8):
  # Example i is the constant image i: every pixel tells where it came from.
  images = jnp.broadcast_to(jnp.arange(b, dtype=jnp.float32)[:, None, None,
                                                               None],
                            (b, h, w, 3))
  return images, jax.nn.one_hot(jnp.arange(b), 10)


def test_cutmix_pastes_a_box_and_lambda_is_its_share():
  images, targets = _const_batch()
  seen_partial = False
  for i in range(8):
    out, t, lam = mix_batch(jax.random.key(i), images, targets,
                            mixup_alpha=0.0, cutmix_alpha=1.0)
    out, t, lam = np.asarray(out), np.asarray(t), float(lam)
    for j in range(4):
      src = out[j, :, :, 0]
      pasted = src == 3 - j  # the reversed batch's example
      assert np.all(pasted | (src == j))
      rows, cols = np.nonzero(pasted)
      if rows.size:  # the pasted pixels form a full rectangle
        area = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert area == rows.size
      np.testing.assert_allclose(1 - rows.size / 64, lam, atol=1e-6)
      want = lam * np.eye(10)[j] + (1 - lam) * np.eye(10)[3 - j]
      np.testing.assert_allclose(t[j], want, atol=1e-6)
    seen_partial |= 0 < lam < 1
  assert seen_partial


def test_mixup_by_hand_and_switches():
  images, targets = _const_batch()
  out, t, lam = mix_batch(jax.random.key(3), images, targets,
                          mixup_alpha=0.8, cutmix_alpha=0.0)
  lam = float(lam)
  assert 0 < lam < 1
  for j in range(4):
    np.testing.assert_allclose(out[j], lam * j + (1 - lam) * (3 - j),
                               rtol=1e-6)
    np.testing.assert_allclose(
        t[j], lam * np.eye(10)[j] + (1 - lam) * np.eye(10)[3 - j], atol=1e-6)
  # mix_prob 0 or both alphas 0: nothing changes
  for kw in ({'mix_prob': 0.0}, {'mixup_alpha': 0.0, 'cutmix_alpha': 0.0}):
    out, t, lam = mix_batch(jax.random.key(0), images, targets, **kw)
    assert float(lam) == 1.0 and np.array_equal(out, images)
  # both on: each batch is one or the other, targets stay distributions
  for i in range(6):
    out, t, lam = mix_batch(jax.random.key(i), images, targets)
    np.testing.assert_allclose(np.asarray(t).sum(-1), 1.0, rtol=1e-6)
    is_cut = np.isin(np.asarray(out)[0], (0.0, 3.0)).all()
    is_mix = np.allclose(np.asarray(out)[0], 3 * (1 - float(lam)), atol=1e-5)
    assert is_cut or is_mix


def test_label_smoothed_cross_entropy_by_hand():
  # the train step's loss: optax's smoothing of one-hot labels, then its
  # cross-entropy against the soft targets
  logits = [[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]]
  labels, s = [2, 0], 0.1
  got = optax.softmax_cross_entropy(
      jnp.array(logits),
      optax.smooth_labels(jax.nn.one_hot(jnp.array(labels), 3), s))
  for row, y, g in zip(logits, labels, got):
    logz = math.log(sum(math.exp(v) for v in row))
    nll = logz - row[y]
    uniform = sum(logz - v for v in row) / 3
    assert abs(float(g) - ((1 - s) * nll + s * uniform)) < 1e-5


def test_lr_schedule_and_topk_by_hand():
  c = tiny_config().train  # 64 images per step: peak = 1e-3 * 64 / 1024
  c.epochs, c.warmup_epochs, c.min_lr = 10, 2.0, 1e-5
  lr = lr_schedule(c, steps_per_epoch=10)  # 100 steps, warm-up 20
  peak = 1e-3 * 64 / 1024
  for step, want in ((0, 0.0), (10, peak / 2), (20, peak),
                     (60, (peak + 1e-5) / 2), (100, 1e-5)):
    assert abs(float(lr(step)) - want) < 1e-9, step
  logits = jnp.array([[0.1, 0.5, 0.2, 0.0], [0.9, 0.1, 0.3, 0.2]])
  top1, top2 = topk_correct(logits, jnp.array([2, 2]), (1, 2))
  np.testing.assert_array_equal(top1, [0, 0])
  np.testing.assert_array_equal(top2, [1, 1])


def _hand_schedule(peak, min_lr, warmup, total, step):
  """The recipe written out: linear from 0 over `warmup` steps, then cosine
  from peak to min_lr at step `total`, held after."""
  if step < warmup:
    return peak * step / warmup
  t = min((step - warmup) / (total - warmup), 1.0)
  return min_lr + 0.5 * (peak - min_lr) * (1 + math.cos(math.pi * t))


@pytest.mark.parametrize('epochs,warmup_epochs,steps_per_epoch,want_warmup', [
    (10, 2.0, 10, 20),  # the usual case
    (10, 0.0, 10, 0),  # no warm-up: the cosine starts at step 0
    (2, 5.0, 10, 19),  # warm-up longer than the run: capped at total - 1
    (1, 0.5, 1, 0),  # one step in all: no warm-up, min_lr at step 1
    (1, 0.25, 3, 0),  # int(0.75) = 0 warm-up steps
    (3, 0.5, 7, 3),  # int(3.5) = 3 warm-up steps of 21
])
def test_lr_schedule_edge_cases_by_hand(epochs, warmup_epochs,
                                        steps_per_epoch, want_warmup):
  c = tiny_config().train
  c.epochs, c.warmup_epochs, c.min_lr = epochs, warmup_epochs, 1e-5
  peak = c.lr * c.batch_size / 1024
  total = max(1, int(epochs * steps_per_epoch))
  lr = lr_schedule(c, steps_per_epoch)
  for step in range(total + 3):
    want = _hand_schedule(peak, 1e-5, want_warmup, total, step)
    assert abs(float(lr(step)) - want) < 1e-6 * peak, step
  assert float(lr(total)) == pytest.approx(1e-5, rel=1e-5)
  assert lr(jnp.int32(0)).dtype == jnp.float32


def test_prune_unused_keeps_whole_modules_that_are_read():
  f = lambda x: jnp.full((2,), x, jnp.float32)
  variables = {'params': {'a': {'w': f(1), 'b': f(2)}, 'b': {'w': f(3)},
                          'top': f(4)},
               'batch_stats': {'a': {'mean': f(5)}, 'c': {'mean': f(6)}}}
  # reads a/w (so all of module a, in every collection) and the top-level
  # 'top'; module b and module c are never read
  kept = prune_unused(lambda v: v['params']['a']['w'] * v['params']['top'],
                      variables)
  assert jax.tree.map(lambda x: float(x[0]), kept) == {
      'params': {'a': {'w': 1.0, 'b': 2.0}, 'top': 4.0},
      'batch_stats': {'a': {'mean': 5.0}}}


# -- the run --------------------------------------------------------------------

@pytest.fixture(scope='module')
def cli(tmp_path_factory):
  """The tiny preset through the CLI, in its own process."""
  workdir = tmp_path_factory.mktemp('cli')
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  proc = subprocess.Popen(
      [sys.executable, '-m', 'bossnax.retrain', f'--config={CONFIG}:tiny',
       f'--workdir={workdir}'], env=env, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True)
  yield proc, workdir
  proc.kill() if proc.poll() is None else None


@pytest.fixture(scope='module')
def run8():
  """The tiny preset on all 8 fake devices (compiled once for the module);
  evaluated at the end only."""
  c = tiny_config(num_images=200)
  c.train.eval_every_epochs = 100
  return Retrain(c)


def test_resumed_run_equals_uninterrupted(run8, tmp_path):
  ref_state, ref = run8.fit(str(tmp_path / 'ref'))  # 8 steps
  ref_state = jax.device_get(ref_state)
  # Stopped before step 5 (as if killed): the last checkpoint is step 3.
  _, stopped = run8.fit(str(tmp_path / 'cut'), stop_at=5)
  assert stopped is None
  state, res = run8.fit(str(tmp_path / 'cut'))
  assert res['resumed_from_step'] == 3 and ref['resumed_from_step'] == 0
  for a, b in zip(jax.tree.leaves(jax.device_get(state)),
                  jax.tree.leaves(ref_state)):
    np.testing.assert_array_equal(a, b)
  for k in ('top1', 'top5', 'ema_top1', 'ema_top5'):
    assert res[k] == ref[k]
  assert res['test_images'] == 200  # 2 batches of 128, the last one padded
  rows = [json.loads(l) for l in open(tmp_path / 'cut' / 'metrics.jsonl')]
  assert {'loss', 'lr', 'grad_norm', 'images_per_s'} <= set(rows[0])
  assert 'eval_top1' in rows[-1]


def test_sharded_step_equals_single_device(run8):
  c = tiny_config(num_images=200)
  c.num_devices = 1
  run1 = Retrain(c)
  state = jax.device_get(run8.init_state(0))
  batch = run8.batches.get_batch(0)
  outs = []
  for r in (run8, run1):
    assert r.mesh.devices.size == (8 if r is run8 else 1)
    st, key = jax.device_put((state, jax.random.key(0)),
                             parallel.replicated(r.mesh))
    x, y = (parallel.global_batch(r.mesh, batch[k]) for k in ('image', 'label'))
    st, metrics = r.step_fn(st, x, y, key)
    outs.append(jax.device_get((st, metrics)))
  (s8, m8), (s1, m1) = outs
  np.testing.assert_allclose(m8['loss'], m1['loss'], rtol=1e-5)
  # the weight EMA after one step: decay * initial + (1 - decay) * new
  d = c.train.ema_decay
  assert d > 0
  for name in ('params', 'batch_stats'):
    jax.tree.map(lambda e, p0, p: np.testing.assert_allclose(
        e, d * p0 + (1 - d) * p, rtol=1e-6, atol=1e-7),
                 s8['ema_' + name], state[name], s8[name])
  for a, b in zip(jax.tree.leaves(s8), jax.tree.leaves(s1)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
  for args, want in (
      (['--config.arch=bogus'], 'write five widths'),
      (['--config.space.name=hytra', '--config.arch=Nope'], 'BossNet-T0'),
      (['--config.train.batch_size=4096'], 'larger than the 256 train'),
      (['--config.train.batch_size=60'], 'does not split over 8 devices'),
      (['--config.space.num_classes=5'], 'space.num_classes=10'),
      (['--config.train.lr=fast'], "takes a float")):
    rc = retrain.main([f'--config={CONFIG}:tiny', f'--workdir={tmp_path}']
                      + args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith('error: '), args
    assert want in err[0], err[0]


@pytest.mark.slow
def test_tiny_preset_through_the_cli(cli):
  proc, workdir = cli
  stdout, stderr = proc.communicate(timeout=600)
  assert proc.returncode == 0, stderr[-2000:]
  result = json.load(open(workdir / 'retrain_result.json'))
  assert 0.0 <= result['top1'] <= result['top5'] <= 1.0
  assert 0.0 <= result['ema_top1'] <= 1.0
  assert result['arch'] == '8:8:16:16:16' and result['test_images'] == 500
  assert result['flops'] > 0 and result['params'] > 0
  assert 'top-1' in stdout and '[retrain] 8/8' in stderr
  # The finished workdir is a DNA teacher (bossnax/teacher.py): its last
  # checkpoint's network gives every block's features.
  from bossnax.teacher import load_teacher
  t = load_teacher(str(workdir))
  assert t.arch_text == '8:8:16:16:16'
  x = jnp.zeros((2, 32, 32, 3))
  feats = [t.net.apply(t.variables, x, jnp.asarray(t.arch_vec), block=b,
                       mode='eval', output='features') for b in range(3)]
  assert [f.shape[-1] for f in feats] == [8, 16, 16]
  assert all(np.isfinite(np.asarray(f)).all() for f in feats)
