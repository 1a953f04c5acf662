"""Train-step time against the number of devices on a fake-device CPU mesh
(prints a table): shows the batch really is split over the mesh.

  python benchmarks/device_scaling.py [--devices=1,2,4,8] [--batch=32]

One subprocess per device count (XLA_FLAGS=--xla_force_host_platform_device_count=N),
each running benchmarks/train_step.py on the :tiny config with the same global
batch. On one CPU the fake devices share the same cores, so the time does not
fall with N: the figure shows the sharded program runs at every N and what the
collectives cost, not a speed-up.
"""

import argparse
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--devices', default='1,2,4,8')
  p.add_argument('--batch', type=int, default=32)
  p.add_argument('--steps', type=int, default=5)
  a = p.parse_args()
  rows = []
  for n in (int(d) for d in a.devices.split(',')):
    env = dict(os.environ, JAX_PLATFORMS='cpu',
               XLA_FLAGS=f'--xla_force_host_platform_device_count={n}')
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'benchmarks', 'train_step.py'),
         '--config=configs/nats_cifar10.py:tiny',
         f'--config.train.batch_size={a.batch}', f'--config.num_devices={n}',
         f'--steps={a.steps}', '--warmup=1'],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    ms = float(re.search(r'([\d.]+) ms/step', out).group(1))
    dev = re.search(r'device: (.*)', out).group(1)
    rows.append((n, ms, a.batch / ms * 1e3, dev))
  print(f'global batch {a.batch}, :tiny config, {a.steps} timed steps')
  print(f'{"devices":>7} {"ms/step":>9} {"images/s":>9}  mesh')
  for n, ms, ips, dev in rows:
    print(f'{n:>7} {ms:>9.1f} {ips:>9.0f}  {dev}')


if __name__ == '__main__':
  main()
