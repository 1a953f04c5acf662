r"""Issue 21's agenda in one device call: a table printed as it goes, and
JSON + logs under --out (the device tool's $OUT), stopping itself before
--budget_s with what it has measured so far.

  bash benchmarks/gpu_session.sh                 # on the device (wheels, then this)
  python benchmarks/gpu_session.py --out=DIR [--budget_s=520]
  python benchmarks/gpu_session.py --cpu-check --out=/tmp/gs   # CPU, same code paths

In order (each stage skipped, and said so, when the time left is short):
  1. the device's bf16 matrix-product rate: the MFU denominator;
  2. NATS train steps, block 0 (8 fair paths, batch 256): float32, bfloat16,
     bfloat16 with width groups (8), bfloat16 with the textbook batch norm
     (BOSSNAX_BN=textbook) instead of the fused one; block 2 in bfloat16
     with and without the prefix cache. ms/step, images/s, model TFLOP/s
     and MFU from the paths' own FLOP count (benchmarks/train_step.py),
     XLA's bytes per step;
  3. scoring every path of each NATS block with recalibration on 1,017
     images: vectorised against the per-path loop;
  4. the end-to-end NATS search (3 blocks x 50 epochs of 50,000 synthetic
     images, effective batch 4,096 = 256 x 16, 8 fair paths) with the
     fastest block-0 variant of stage 2, in a subprocess bounded by the
     time left: finished, its wall time; cut, the training rate it reached
     and the projected total (training + stage 3's scoring);
  5. HyTra's ResNet50-T in bfloat16 inside the supernet against standalone
     (benchmarks/hytra_path.py), and a plain Flax ResNet-50 (the dynresnet
     space's standalone network) in bfloat16, both at batch 256;
  6. DeiT's on-device training views at 224 px, batch 256, with and
     without RandAugment (benchmarks/augment_views.py): what AutoFormer's
     and the retraining's augmentation costs next to a step.
--cpu-check: tiny networks, batches and images, same functions: the
figures mean nothing, the code paths are the device's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402


class Session:
  """The deadline, the results so far and where they go."""

  def __init__(self, out, budget_s, cpu):
    self.out, self.cpu = out, cpu
    self.t0, self.deadline = time.time(), time.time() + budget_s
    self.results = {'device': jax.devices()[0].device_kind,
                    'devices': jax.device_count(), 'cpu_check': cpu,
                    'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
                    'budget_s': budget_s, 'skipped': [], 'errors': []}
    os.makedirs(out, exist_ok=True)
    self._text = open(os.path.join(out, 'gpu_session.txt'), 'w')

  def left(self):
    return self.deadline - time.time()

  def say(self, line):
    print(line, flush=True)
    self._text.write(line + '\n')
    self._text.flush()

  def save(self):
    self.results['elapsed_s'] = round(time.time() - self.t0, 1)
    with open(os.path.join(self.out, 'gpu_session.json'), 'w') as f:
      json.dump(self.results, f, indent=1)

  def stage(self, name, need_s, fn):
    """fn() unless fewer than need_s seconds are left; errors recorded,
    the session goes on."""
    if self.left() < need_s:
      self.results['skipped'].append(f'{name}: {self.left():.0f} s left, '
                                     f'needs ~{need_s} s')
      self.say(f'[{name}] skipped: {self.left():.0f} s left')
      self.save()
      return None
    tic = time.time()
    try:
      value = fn()
    except Exception as e:  # one stage's failure keeps the others
      first = (str(e).strip().splitlines() or [repr(e)])[0][:300]
      self.results['errors'].append(f'{name}: {type(e).__name__}: {first}')
      self.say(f'[{name}] failed: {type(e).__name__}: {first}')
      value = None
    self.say(f'[{name}] {time.time() - tic:.0f} s')
    self.save()
    return value


def nats_config(cpu, overrides=()):
  """The NATS search config of the session: the paper's networks at
  batch 256 with 8 fair paths (the --cpu-check: the tiny preset)."""
  from bossnax.config import parse_args
  base = (f'{ROOT}/configs/nats_cifar10.py' + (':tiny' if cpu else ''))
  args = [f'--config={base}', '--config.train.accum_steps=1',
          '--config.data.source=synthetic']
  if not cpu:
    args += ['--config.train.batch_size=256', '--config.train.paths_per_step=8',
             '--config.train.fair=True']
  return parse_args(args + list(overrides), {})[0]


STEP_VARIANTS = (  # (label, block, overrides, environment)
    ('f32', 0, (), {}),
    ('bf16', 0, ('--config.dtype=bfloat16',), {}),
    ('bf16 wg8', 0, ('--config.dtype=bfloat16',
                     '--config.train.width_groups=8'), {}),
    ('bf16 textbook BN', 0, ('--config.dtype=bfloat16',),
     {'BOSSNAX_BN': 'textbook'}),
    ('bf16 b2 prefix cache', 2, ('--config.dtype=bfloat16',), {}),
    ('bf16 b2 no prefix cache', 2, ('--config.dtype=bfloat16',
                                    '--config.train.cache_prefix=False'), {}),
)


def step_table(s, peak):
  import train_step
  from bossnax.engine import supernet
  rows = []
  s.results['steps'] = rows
  for label, block, overrides, env in STEP_VARIANTS:
    if s.cpu and 'wg8' in label:  # the tiny preset has 2 paths
      label = 'bf16 wg2'
      overrides = ('--config.dtype=bfloat16', '--config.train.width_groups=2')
    if s.left() < 60:
      s.results['skipped'].append(f'step {label}: out of time')
      continue
    os.environ.update(env)
    supernet.compiled_step.cache_clear()  # the BN switch is read at trace
    try:
      out = train_step.measure(nats_config(s.cpu, overrides), block,
                               steps=3 if s.cpu else 20,
                               warmup=1 if s.cpu else 3, peak_tflops=peak)
    except Exception as e:
      out = {'error': f'{type(e).__name__}: {str(e).splitlines()[0][:200]}'}
    finally:
      for k in env:
        os.environ.pop(k, None)
      supernet.compiled_step.cache_clear()
    out.update(label=label, overrides=list(overrides))
    rows.append(out)
    if 'error' in out:
      s.say(f'  {label:<24} failed: {out["error"]}')
    else:
      s.say(f'  {label:<24} {out["ms_step"]:8.1f} ms/step '
            f'{out["images_s"]:8.0f} img/s  model {out.get("model_tflops", 0):6.2f} '
            f'TFLOP/s  MFU {100 * out.get("mfu", 0):5.1f}%  XLA '
            f'{out["xla_bytes"] / 2**30:6.2f} GiB/step  compile '
            f'{out["compile_s"]:.0f} s')
    s.save()
  return rows


def scoring(s):
  import score_block
  rows = []
  s.results['scoring'] = rows
  images = 32 if s.cpu else 1017
  for block in range(3):
    c = nats_config(s.cpu, ('--config.search.batch_size=' +
                            ('16' if s.cpu else '1017'),))
    out = score_block.measure(c, block, images, repeats=1 if s.cpu else 2)
    rows.append(out)
    s.say(f'  block {block}: {out["paths"]} paths, vectorised '
          f'{out["vectorised_s"]:.2f} s, loop {out["loop_s"]:.2f} s '
          f'({out["ratio"]:.1f}x), max diff {out["max_diff"]:.1e}')
    s.save()
  return rows


def end_to_end(s, overrides, cap_s):
  """The whole search in a subprocess, killed at cap_s; its figures."""
  work = os.path.join('/tmp', 'bossnax_e2e')
  subprocess.run(['rm', '-rf', work])
  if s.cpu:
    args = [f'--config={ROOT}/configs/nats_cifar10.py:tiny',
            '--config.data.source=synthetic']
  else:
    args = [f'--config={ROOT}/configs/nats_cifar10.py',
            '--config.data.source=synthetic', '--config.train.batch_size=256',
            '--config.train.accum_steps=16', '--config.search.batch_size=1017',
            '--config.search.num_images=1017', '--config.search.truth_file=',
            '--config.train.log_every_steps=4']
  args += list(overrides)
  cmd = [sys.executable, '-m', 'bossnax.main', *args, f'--workdir={work}']
  log = os.path.join(s.out, 'e2e.log')
  tic = time.time()
  with open(log, 'w') as f:
    try:
      code = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                            timeout=cap_s).returncode
    except subprocess.TimeoutExpired:
      code = None
  wall = time.time() - tic
  out = {'command': ' '.join(['python -m bossnax.main', *args]),
         'wall_s': round(wall, 1), 'finished': code == 0, 'exit': code}
  rows = []
  path = os.path.join(work, 'metrics.jsonl')
  if os.path.isfile(path):
    rows = [json.loads(l) for l in open(path) if l.strip()]
  rates = [r['images_per_s'] for r in rows if 'images_per_s' in r]
  if rates:
    from bossnax.config import parse_args
    c = parse_args(args, {})[0]
    images = 3 * c.train.epochs_per_block * (50_000 if not s.cpu else
                                             c.data.train_images or 2000)
    rate = float(np.median(rates[len(rates) // 2:]))  # steady: 2nd half
    score_s = sum(r.get('vectorised_s', 0) for r in
                  s.results.get('scoring', []))
    out.update(images_per_s=rate, steps_logged=len(rates),
               projected_train_s=images / rate,
               projected_total_s=images / rate + score_s)
  return out


def hytra_and_resnet(s, peak):
  import hytra_path
  res = {}
  if s.cpu:
    kw = dict(arch='[[1],[1],[0,1],[]]', depth=1, base_width=4,
              stem='cifar', resolution=16, batch=8, steps=2, warmup=1)
  else:
    kw = dict(arch='ResNet50-T', batch=256, resolution=224, steps=10)
  res['hytra'] = hytra_path.measure(dtype='bfloat16', peak_tflops=peak, **kw)
  h = res['hytra']
  s.say(f"  HyTra {h['arch']}: in supernet {h['in_supernet']['images_s']:.0f} "
        f"img/s, standalone {h['standalone']['images_s']:.0f} img/s "
        f"(ratio {h['speed_ratio']:.2f}), MFU in supernet "
        f"{100 * h['in_supernet'].get('mfu', 0):.1f}%")
  s.results['hytra'] = h
  s.save()
  # A plain Flax ResNet-50: the dynresnet space's standalone network.
  from bossnax.spaces.dynresnet import DynResNetSpace
  if s.cpu:
    space = DynResNetSpace(stem_widths=(8,), stage_widths=((8,),) * 4,
                           stage_depths=((1,),) * 4, num_classes=10,
                           image_size=16, stem='cifar')
    arch, batch, size = space.largest(), 8, 16
  else:
    space = DynResNetSpace()
    arch, batch, size = space.parse('resnet50'), 256, 224
  net, vec = space.standalone(arch)
  madds, _ = space.flops_params(arch, resolution=size)
  dt, comp, _ = hytra_path.time_step(
      net, jnp.asarray(vec), batch, size, space.num_classes, jnp.bfloat16,
      2 if s.cpu else 10, 1 if s.cpu else 3)
  r = {'images_s': batch / dt, 'ms_step': dt * 1e3, 'compile_s': comp,
       'model_tflops': 6 * madds * batch / dt / 1e12}
  if peak:
    r['mfu'] = r['model_tflops'] / peak
  res['resnet50'] = r
  s.results['resnet50'] = r
  s.say(f"  plain ResNet-50 (bf16, batch {batch}): {r['images_s']:.0f} img/s, "
        f"MFU {100 * r.get('mfu', 0):.1f}%")
  return res


def views(s):
  import augment_views
  out = []
  for ops in augment_views.DEIT:
    r = (augment_views.measure(ops, 32, 8, 2) if s.cpu else
         augment_views.measure(ops, 224, 256, 10))
    s.say(f"  views {ops}: {r['images_s']:.0f} img/s "
          f"({r['ms_batch']:.1f} ms per batch of {r['batch']})")
    out.append(r)
  s.results['augment_views'] = out
  s.save()
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--out', default=os.environ.get('OUT', '/tmp/gpu_session'))
  p.add_argument('--budget_s', type=float, default=0.0,
                 help='the whole session (default 520 s; --cpu-check 240 s)')
  p.add_argument('--cpu-check', dest='cpu', action='store_true')
  p.add_argument('--e2e_s', type=float, default=0.0,
                 help='cap of the end-to-end run (0: the time left less '
                 'what stage 5 needs)')
  a = p.parse_args(argv)
  s = Session(a.out, a.budget_s or (240.0 if a.cpu else 520.0), a.cpu)
  s.say(f"{s.results['device']} x{s.results['devices']}, {s.results['date']}"
        f"{' (CPU check: figures meaningless)' if a.cpu else ''}")

  def peak():
    import matmul_peak
    n = 256 if a.cpu else 8192
    return matmul_peak.rate(jnp.bfloat16, n, 3 if a.cpu else 20)
  rate = s.stage('peak', 10, peak) or 0.0
  s.results['peak_bf16_tflops'] = rate
  s.say(f'  bf16 matmul {rate:.1f} TFLOP/s (the MFU denominator)')
  s.stage('steps', 90, lambda: step_table(s, rate))
  s.stage('scoring', 60, lambda: scoring(s))
  # the fastest block-0 option (the textbook BN is a baseline, not one)
  ok = [r for r in s.results.get('steps', [])
        if r.get('block') == 0 and 'ms_step' in r
        and 'textbook' not in r['label']]
  best = min(ok, key=lambda r: r['ms_step']) if ok else None
  overrides = best['overrides'] if best else ['--config.dtype=bfloat16']
  s.results['e2e_defaults'] = overrides
  reserve = 60 if a.cpu else 175  # stages 5 and 6
  cap = a.e2e_s or max(s.left() - reserve, 0)
  if a.cpu:  # the tiny run cut short: the projection's code path
    cap = min(cap, 40)

  def e2e():
    out = end_to_end(s, overrides, cap)
    s.results['e2e'] = out
    line = (f"  {'finished' if out['finished'] else 'cut'} after "
            f"{out['wall_s']:.0f} s with {' '.join(overrides) or 'defaults'}")
    if 'images_per_s' in out:
      line += (f"; {out['images_per_s']:.0f} img/s, projected "
               f"{out['projected_total_s'] / 60:.1f} min in all")
    s.say(line)
    return out
  if cap >= 30:
    s.stage('end-to-end', 30, e2e)
  else:
    s.results['skipped'].append(f'end-to-end: {cap:.0f} s left for it')
    s.say(f'[end-to-end] skipped: {cap:.0f} s left for it')
  s.stage('hytra + resnet50', 45 if a.cpu else 120,
          lambda: hytra_and_resnet(s, rate))
  s.stage('augment views', 15 if a.cpu else 25, lambda: views(s))
  s.save()
  s.say(f"results in {a.out}/gpu_session.json ({s.results['elapsed_s']:.0f} s)")
  return 0


if __name__ == '__main__':
  sys.exit(main())
