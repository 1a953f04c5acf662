"""Sum a Perfetto trace (from train_step.py --profile_dir) by GPU kernel
class: how busy the device was and where its time went (prints a table).

  python benchmarks/trace_summary.py TRACE.json.gz [--top=15]
"""

import argparse
import collections
import gzip
import json


def kind(name):
  if any(k in name for k in ('fprop', 'dgrad', 'wgrad')) or 'conv' in name.lower():
    return 'convolution kernels'
  if 'gemm' in name or 'nvjet' in name or 'dot' in name:
    return 'matrix products (heads)'
  if 'reduce' in name:
    return 'reduction fusions (BN statistics, loss)'
  return 'other element-wise / copies'


def main():
  p = argparse.ArgumentParser()
  p.add_argument('trace')
  p.add_argument('--top', type=int, default=15)
  a = p.parse_args()
  data = json.load(gzip.open(a.trace))
  events = data['traceEvents'] if isinstance(data, dict) else data
  procs = {e['pid']: e['args']['name'] for e in events
           if e.get('ph') == 'M' and e.get('name') == 'process_name'}
  gpu = [e for e in events if e.get('ph') == 'X' and 'dur' in e and
         procs.get(e['pid'], '').startswith('/device:GPU')]
  if not gpu:
    raise SystemExit('no GPU kernels in this trace')
  busy = sum(e['dur'] for e in gpu)
  span = max(e['ts'] + e['dur'] for e in gpu) - min(e['ts'] for e in gpu)
  print(f'GPU busy {busy / 1e3:.1f} ms of a {span / 1e3:.1f} ms span '
        f'({100 * busy / span:.0f}%), {len(gpu)} kernels')
  by_kind, by_name = collections.Counter(), collections.Counter()
  for e in gpu:
    by_kind[kind(e['name'])] += e['dur']
    by_name[e['name'][:80]] += e['dur']
  for k, t in by_kind.most_common():
    print(f'{k:<42} {t / 1e3:8.1f} ms {100 * t / busy:5.1f}%')
  print('top kernels:')
  for k, t in by_name.most_common(a.top):
    print(f'  {t / 1e3:8.2f} ms  {k}')


if __name__ == '__main__':
  main()
