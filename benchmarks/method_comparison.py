r"""The BossNAS paper's Table 5/6 on one benchmark: every method on the same
data and budget, one table against the ground truth and the size baselines.

  python benchmarks/method_comparison.py --space=nats --preset=quick \
      --workdir=/tmp/cmp [--methods=bossnas,single_path,supervised,linear,dna,...] \
      [--teacher=DIR] [-- --config.KEY=VALUE ...]
  (or benchmarks/method_comparison.sh SPACE PRESET [WORKDIR])

Each method is a `python -m bossnax.main` run in WORKDIR/METHOD (a finished
one is reused: the harness resumes); 'linear' is BossNAS's supernet scored by
supervised linear evaluation (`bossnax.rescore --config.search.evaluator=
linear`); 'supervised_oneshot', 'greedynas', 'autoformer' (one-shot
with label smoothing, mixup / cutmix and top-1 fitness) and 'data' (DATA's
sandwich MoCo supernet, scored by closeness to the largest network) score
the ground truth's architectures as whole networks. DNA needs a teacher: --teacher=DIR, or one is trained first
into WORKDIR/teacher (NATS: the widest network, configs/retrain_hytra.py:
nats_quick for the quick preset, :nats otherwise; the MBConv quick/tiny and
HyTra tiny presets: retrain_hytra.py:*_teacher); on HyTra the search's
space.block_ends are set to where the teacher's blocks end. Writes WORKDIR/comparison.json
and, where there is a ground truth, WORKDIR/comparison.png (a scatter of score against true
accuracy per method, and the log-channels size baseline's); prints the table; the wall times
include compilation.
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

CONFIGS = {'nats': 'configs/nats_cifar10.py', 'mbconv': 'configs/mbconv_cifar.py',
           'hytra': 'configs/hytra_cifar.py'}
METHODS = ('bossnas', 'single_path', 'supervised', 'linear', 'dna',
           'supervised_oneshot', 'greedynas', 'autoformer', 'data')
ONE_SHOT = ('supervised_oneshot', 'greedynas', 'autoformer', 'data')  # whole nets
# AutoFormer's recipe on a CNN space: its regularisation and top-1 fitness;
# the optimiser stays the preset's (AdamW at 5e-4 per 512 is tuned for
# transformers), the channels are entangled as every NATS path's are.
AUTOFORMER = ('--config.train.label_smoothing=0.1',
              '--config.train.mixup_alpha=0.8',
              '--config.train.cutmix_alpha=1.0',
              '--config.search.fitness=error')
# DATA on a preset: its MoCo loss, sandwich and selection rule on the
# preset's data, views and optimiser; a queue the preset's batches divide
# (its 65,536 would hold random keys for all of a CPU budget), and at least
# one random subnet beside the largest and the smallest.
DATA = ('--config.moco.queue_size=4096',
        '--config.search.evaluator=similarity_to_largest')
# (training, evaluation) and the paper's figures: Table 5 (MBConv, ImageNet,
# the 23 networks) and Table 6 (NATS-Bench size, CIFAR-10): tau, rho, R.
ROWS = {
    'dna': ('supervised distillation (DNA)', 'distillation loss'),
    'supervised': ('supervised classification', 'classification loss'),
    'single_path': ('single-path bootstrapping', 'population centre'),
    'linear': ('ensemble bootstrapping', 'supervised linear eval.'),
    'bossnas': ('ensemble bootstrapping', 'population centre (BossNAS)'),
    'supervised_oneshot': ('one-shot supervised (SPOS)', 'whole-net classif.'),
    'greedynas': ('greedy one-shot supervised', 'whole-net classif.'),
    'autoformer': ('one-shot, DeiT regularisation', 'whole-net top-1'),
    'data': ('sandwich MoCo v2 (DATA)', 'similarity to largest'),
}
PAPER = {
    'mbconv': {'dna': (0.62, 0.77, 0.83), 'supervised': (0.46, 0.65, 0.71),
               'single_path': (0.12, 0.15, 0.28),
               'linear': (0.55, 0.73, 0.79), 'bossnas': (0.65, 0.78, 0.85)},
    'nats': {'bossnas': (0.53, 0.73, 0.72),
             'supervised_oneshot': (0.42, 0.60, 0.59)},
}
QUICK = ('quick', 'tiny')


def run(cmd, log):
  """Run cmd (from the repo root), output to `log`; (returncode, seconds)."""
  tic = time.time()
  with open(log, 'w') as f:
    code = subprocess.call(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
  return code, time.time() - tic


TEACHER_PRESETS = {('nats', 'quick'): 'nats_quick', ('nats', 'tiny'):
                   'nats_quick', ('mbconv', 'quick'): 'mbconv_quick_teacher',
                   ('mbconv', 'tiny'): 'mbconv_tiny_teacher',
                   ('hytra', 'tiny'): 'hytra_tiny_teacher'}


def teacher_for(args, workdir):
  """(the DNA teacher's directory, the search's extra overrides): --teacher,
  or one trained first with configs/retrain_hytra.py's preset for this
  space and budget; ('', []) when there is none."""
  teacher = args.teacher
  if not teacher:
    preset = TEACHER_PRESETS.get((args.space, args.preset),
                                 'nats' if args.space == 'nats' else '')
    if not preset:
      return '', []
    teacher = os.path.join(workdir, 'teacher')
    if not os.path.isfile(os.path.join(teacher, 'retrain_result.json')):
      print(f'training the DNA teacher (retrain_hytra.py:{preset}) in '
            f'{teacher}', flush=True)
      code, secs = run([sys.executable, '-m', 'bossnax.retrain',
                        f'--config=configs/retrain_hytra.py:{preset}',
                        f'--workdir={teacher}'], teacher + '.log')
      if code:
        print(f'  teacher failed (see {teacher}.log): no DNA row', flush=True)
        return '', []
      print(f'  {secs:.0f} s', flush=True)
  extra = []
  if args.space == 'hytra':  # blocks end at the teacher's scales
    from bossnax.teacher import load_teacher
    t = load_teacher(teacher)
    ends = t.space.block_end_stages(t.space.unflatten(t.arch_vec))
    extra.append(f'--config.space.block_ends={tuple(ends)}')
  return teacher, extra


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--space', choices=sorted(CONFIGS), required=True)
  p.add_argument('--preset', default='quick')
  p.add_argument('--workdir', required=True)
  p.add_argument('--methods', default=','.join(METHODS))
  p.add_argument('--teacher', default='')
  p.add_argument('overrides', nargs='*', help='--config.KEY=VALUE, after --')
  args = p.parse_args(argv)
  methods = [m for m in args.methods.split(',') if m]
  bad = [m for m in methods if m not in METHODS]
  if bad:
    p.error(f'unknown method {bad[0]!r}: use {",".join(METHODS)}')
  os.makedirs(args.workdir, exist_ok=True)
  config = f'{CONFIGS[args.space]}:{args.preset}'
  from bossnax.config import load_config_file
  truth_file = load_config_file(os.path.join(ROOT, config)).search.truth_file
  base = [sys.executable, '-m', 'bossnax.main', f'--config={config}',
          *args.overrides]
  times = {}
  for m in methods:
    out = os.path.join(args.workdir, m)
    if os.path.isfile(os.path.join(out, 'scores.csv')):
      print(f'{m}: reusing {out}', flush=True)
      times[m] = json.load(open(os.path.join(out, 'wall_s.json')))['s'] if (
          os.path.isfile(os.path.join(out, 'wall_s.json'))) else None
      continue
    if m == 'linear':
      src = os.path.join(args.workdir, 'bossnas')
      if not os.path.isfile(os.path.join(src, 'scores.csv')):
        print('linear: needs the bossnas run (add it to --methods)')
        continue
      cmd = [sys.executable, '-m', 'bossnax.rescore', f'--config={config}',
             *args.overrides, f'--workdir={src}', f'--out={out}',
             '--config.search.evaluator=linear']
    else:
      cmd = base + [f'--workdir={out}', f'--config.method={m}']
      if m in ONE_SHOT and truth_file:
        # whole networks are scored one by one: those of the ground truth
        cmd += [f'--config.search.archs_file={truth_file}',
                '--config.search.strategy=auto']
        if args.preset in QUICK:  # a whole network per candidate: a CPU's
          cmd.append('--config.search.num_archs=128')  # minutes
      if m == 'greedynas':
        # the one-shot row's budget: as many steps of as many paths (a round
        # of one step keeps train.paths_per_step of twice as many
        # candidates), no early stop
        paths = load_config_file(os.path.join(ROOT, config)).train.paths_per_step
        cmd += [f'--config.greedy.keep={paths}',
                f'--config.greedy.sample={2 * paths}',
                '--config.greedy.early_stop_alpha=0']
      if m == 'autoformer':
        cmd += list(AUTOFORMER)
      if m == 'data':
        paths = load_config_file(os.path.join(ROOT, config)).train.paths_per_step
        cmd += [*DATA, f'--config.train.paths_per_step={max(paths, 3)}']
        if args.preset in QUICK:  # 16 steps: at 0.999 the key encoder
          cmd.append('--config.moco.momentum=0.9')  # would stay 98% random
      if m == 'dna':
        teacher, extra = teacher_for(args, args.workdir)
        if not teacher:
          print('dna: no teacher (--teacher=DIR): skipped', flush=True)
          continue
        cmd += [f'--config.distill.teacher={teacher}', *extra]
    print(f'{m}: running, log in {out}.log', flush=True)
    os.makedirs(out, exist_ok=True)
    code, secs = run(cmd, out + '.log')
    if code:
      print(f'{m}: failed (exit {code}), see {out}.log', flush=True)
      continue
    times[m] = secs
    json.dump({'s': secs}, open(os.path.join(out, 'wall_s.json'), 'w'))
    print(f'{m}: {secs:.0f} s', flush=True)
  table = report(args, methods, times)
  json.dump(table, open(os.path.join(args.workdir, 'comparison.json'), 'w'),
            indent=1)
  return 0


def report(args, methods, times):
  from bossnax import rank
  from bossnax.config import load_config_file
  c = load_config_file(os.path.join(ROOT, f'{CONFIGS[args.space]}:'
                                    f'{args.preset}'))
  truth_file = c.search.truth_file
  truth = (rank.read_truth(os.path.join(ROOT, truth_file)) if truth_file
           else None)
  rows, baselines, base_n, panels = [], None, 0, []
  for m in methods:
    path = os.path.join(args.workdir, m, 'scores.csv')
    if not os.path.isfile(path):
      continue
    row = {'method': m, 'training': ROWS[m][0], 'evaluation': ROWS[m][1],
           'wall_s': times.get(m)}
    if truth is not None:
      scores = rank.read_scores(path)
      r = rank.evaluate(scores, truth)
      panels.append((m, ROWS[m][1], scores, r))
      row.update({k: r[k] for k in ('kendall', 'spearman', 'pearson', 'n',
                                    'within_decile_spearman',
                                    'top_decile_spearman')})
      row['regret'] = {g['budget_quantile']: g['regret'] for g in r['regret']}
      if r['n'] > base_n:  # the baselines over the most architectures
        baselines, base_n = r['baselines'], r['n']
        for b in baselines.values():
          b['n'] = r['n']
    row['paper'] = PAPER.get(args.space, {}).get(m)
    rows.append(row)
  smoke = args.preset in QUICK
  print(f'\n{args.space} {args.preset}: every method on the same data and '
        f'budget' + (' -- a CPU smoke budget: the figures say only that the '
                     'pipeline runs, not how the methods rank' if smoke else
                     ''))
  head = (f"{'method':<18} {'evaluation':<28} {'n':>5} {'tau':>6} "
          f"{'rho':>6} {'R':>6} {'rho/dec':>7} {'rho/top':>7} "
          f"{'regret q.25/.5/.75/1':>22} "
          f"{'wall s':>7}  paper tau/rho/R")
  print(head)

  def fmt(r, name, evaluation):
    if 'kendall' not in r:
      cells = ' ' * 65
    else:
      reg = '/'.join(f"{r['regret'][q]:.2f}" for q in (0.25, 0.5, 0.75, 1.0))
      cells = (f"{r['n']:>5} {r['kendall']:>6.3f} {r['spearman']:>6.3f} "
               f"{r['pearson']:>6.3f} {r['within_decile_spearman']:>7.3f} "
               f"{r['top_decile_spearman']:>7.3f} {reg:>22}")
    wall = f"{r['wall_s']:>7.0f}" if r.get('wall_s') else ' ' * 7
    paper = '/'.join(f'{v:.2f}' for v in r['paper']) if r.get('paper') else ''
    return f'{name:<18} {evaluation:<28} {cells} {wall}  {paper}'
  for r in rows:
    print(fmt(r, r['method'], r['evaluation']))
  if baselines:
    for name, b in baselines.items():
      b = dict(b, regret={g['budget_quantile']: g['regret']
                          for g in b['regret']})
      print(fmt(b, name, 'size baseline'))
  figure = ''
  if panels:
    figure = os.path.join(args.workdir, 'comparison.png')
    draw(panels, truth, figure, f'{args.space} {args.preset}' + (
        ' (CPU smoke budget: not a result)' if smoke else ''))
    print(f'figure: {figure}')
  return {'space': args.space, 'preset': args.preset, 'smoke': smoke,
          'rows': rows, 'baselines': baselines, 'figure': figure}


def draw(panels, truth, path, suptitle):
  """One scatter of score against true accuracy per method, and the
  strongest size proxy's (log channels where the space has it, else
  params) over the same architectures as the widest method panel."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  from bossnax import rank
  widest = max(panels, key=lambda p: p[3]['n'])
  archs = [a for a in truth if a in widest[2]]
  proxy = rank.log_channels(archs[0]) is not None
  base = {a: (rank.log_channels(a) if proxy else widest[2][a][2],)
          for a in archs}
  name = 'log channels' if proxy else 'params'
  panels = panels + [(name, 'size baseline, no training', base,
                      rank.evaluate({a: (v[0],) + widest[2][a][1:]
                                     for a, v in base.items()}, truth))]
  cols = min(4, len(panels))
  rows = -(-len(panels) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.2 * rows),
                           squeeze=False)
  for ax, (m, evaluation, scores, r) in zip(axes.flat, panels):
    common = [a for a in truth if a in scores]
    rank.scatter(ax, [scores[a][0] for a in common],
                 [truth[a] for a in common], rank.title(m, r),
                 xlabel=evaluation)
  for ax in list(axes.flat)[len(panels):]:
    ax.axis('off')
  fig.suptitle(suptitle)
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


if __name__ == '__main__':
  sys.exit(main())
