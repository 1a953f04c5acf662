"""Write the golden files of tests/test_golden.py: the tiny preset's block
score tables (nats_tiny_run.json) and scores.csv, from a search run with the
test suite's settings (8 fake CPU devices, the run on 2 of them).

  python tests/golden/make_golden.py OUT_DIR [--config.x=y ...]

Regenerate only in a commit of its own whose message names what changed;
keep the old files where a test still reproduces them (old_defaults/).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, ROOT)


def main(out, overrides):
  import jax
  from bossnax.config import apply_overrides, load_config_file
  from bossnax.run import Run, write_results
  from bossnax.spaces import make_space
  c = load_config_file(os.path.join(ROOT, 'configs', 'nats_cifar10.py') +
                       ':tiny')
  c.num_devices = 2
  apply_overrides(c, [o.removeprefix('--config.') for o in overrides])
  work = tempfile.mkdtemp()
  run = Run(c, os.path.join(work, 'run'))
  try:
    _, meta = run.train_and_search()
  finally:
    run.close()
  os.makedirs(out, exist_ok=True)
  write_results(c, make_space(c.space), meta, work)
  shutil.copy(os.path.join(work, 'scores.csv'),
              os.path.join(out, 'nats_tiny_scores.csv'))
  commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT,
                          capture_output=True, text=True).stdout.strip()
  made_by = ('python tests/golden/make_golden.py ' + ' '.join(overrides) +
             f' at {commit} (the tiny preset, 2 fake CPU devices, jax '
             f'{jax.__version__})').replace('  ', ' ')
  golden = {'made_by': made_by, 'pool': meta['pool'],
            'tables': {str(k): v for k, v in meta['tables'].items()}}
  with open(os.path.join(out, 'nats_tiny_run.json'), 'w') as f:
    json.dump(golden, f, indent=1)
  print(made_by)


if __name__ == '__main__':
  main(sys.argv[1], sys.argv[2:])
