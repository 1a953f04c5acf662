r"""What GreedyNAS's early stop saves: the same config trained three ways,
one table of supernet steps, training time and the search's result.

  python benchmarks/greedy_early_stop.py --workdir=/tmp/gstop \
      [--config=configs/greedynas_cifar.py:quick] [-- --config.KEY=VALUE ...]

  greedy        method=greedynas with the config's early stop
  greedy_full   method=greedynas, greedy.early_stop_alpha=0 (every step)
  spos          method=supervised_oneshot (uniform single paths, every step)

Each is a `python -m bossnax.main` run in WORKDIR/NAME (a finished one is
reused). 'train s' is the wall time from the run's start to its last
training step (compilation, the greedy candidates' scoring included);
'cost' is that time over SPOS's; 's/step' the steady time of a step
(between the first and the last logged step: no compilation, the greedy
rounds' scoring included). Writes WORKDIR/early_stop.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = {'greedy': [], 'greedy_full': ['--config.greedy.early_stop_alpha=0'],
            'spos': ['--config.method=supervised_oneshot']}


def run_variant(name, args, extra):
  out = os.path.join(args.workdir, name)
  done = os.path.join(out, 'timing.json')
  if os.path.isfile(done):
    print(f'{name}: reusing {out}', flush=True)
    return json.load(open(done))
  os.makedirs(out, exist_ok=True)
  cmd = [sys.executable, '-m', 'bossnax.main', f'--config={args.config}',
         f'--workdir={out}', *args.overrides, *extra]
  print(f'{name}: running, log in {out}.log', flush=True)
  tic = time.time()
  with open(out + '.log', 'w') as f:
    code = subprocess.call(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
  if code:
    raise SystemExit(f'{name} failed (exit {code}): see {out}.log')
  rows = [json.loads(l) for l in open(os.path.join(out, 'metrics.jsonl'))]
  train = [r for r in rows if 'loss' in r]
  ranking = json.load(open(os.path.join(out, 'ranking.json')))
  timing = {'start': tic, 'wall_s': time.time() - tic,
            'train_s': train[-1]['time'] - tic, 'steps': train[-1]['step'],
            's_per_step': (train[-1]['time'] - train[0]['time']) / max(
                train[-1]['step'] - train[0]['step'], 1),
            'early_stop': ranking.get('greedy', {}).get('early_stop'),
            'best': ranking['best'], 'best_score': ranking['top'][0]['score']}
  json.dump(timing, open(done, 'w'), indent=1)
  return timing


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--workdir', required=True)
  p.add_argument('--config', default='configs/greedynas_cifar.py:quick')
  p.add_argument('overrides', nargs='*', help='--config.KEY=VALUE, after --')
  args = p.parse_args(argv)
  os.makedirs(args.workdir, exist_ok=True)
  out = {name: run_variant(name, args, extra)
         for name, extra in VARIANTS.items()}
  base = out['spos']['train_s']
  print(f"\n{args.config}: {'variant':<12} {'steps':>6} {'train s':>8} "
        f"{'cost':>6} {'s/step':>7} {'wall s':>7}  best (score = -validation "
        "loss)")
  for name, r in out.items():
    stop = r['early_stop']
    steps = f"{r['steps']}" + (f"/{stop['of_steps']}" if stop else '')
    print(f"{'':<{len(args.config) + 1}} {name:<12} {steps:>6} "
          f"{r['train_s']:>8.0f} {r['train_s'] / base:>6.0%} "
          f"{r['s_per_step']:>7.2f} {r['wall_s']:>7.0f}  {r['best']} "
          f"({r['best_score']:.4f})")
  json.dump(out, open(os.path.join(args.workdir, 'early_stop.json'), 'w'),
            indent=1)
  return 0


if __name__ == '__main__':
  sys.exit(main())
