"""The rank command: correlations, baselines, deciles, regret, CLI."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from bossnax import rank
from conftest import ROOT, SHARED

TRUTH = SHARED / 'benchmarks' / 'nats_sss_cifar10_sample2048.csv'


def _scores(archs, score, flops=None):
  flops = flops or (lambda a: float(sum(int(c) for c in a.split(':'))))
  return {a: (score(a), flops(a), 2 * flops(a)) for a in archs}


def test_correlations_by_hand():
  truth = {'8:8:8:8:8': 1.0, '8:8:8:8:16': 2.0, '8:8:8:8:24': 3.0,
           '8:8:8:8:32': 4.0}
  up = rank.evaluate(_scores(truth, lambda a: truth[a]), truth)
  assert up['spearman'] == pytest.approx(1) and up['kendall'] == pytest.approx(1)
  down = rank.evaluate(_scores(truth, lambda a: -truth[a]), truth)
  assert down['spearman'] == pytest.approx(-1)
  # one swapped pair out of 6: Kendall = (5 - 1) / 6
  swapped = {'8:8:8:8:8': 2.0, '8:8:8:8:16': 1.0, '8:8:8:8:24': 3.0,
             '8:8:8:8:32': 4.0}
  r = rank.evaluate(_scores(truth, lambda a: swapped[a]), truth)
  assert r['kendall'] == pytest.approx(4 / 6)


def test_regret_and_deciles_by_hand():
  archs = [f'8:8:8:8:{8 * (i + 1)}' for i in range(8)]
  acc = dict(zip(archs, [1, 2, 3, 4, 5, 6, 7, 8.0]))
  # scores pick the smallest net everywhere: regret = best - worst in budget
  r = rank.evaluate(_scores(archs, lambda a: -int(a.split(':')[-1])), acc)
  full = [g for g in r['regret'] if g['budget_quantile'] == 1.0][0]
  assert full['regret'] == pytest.approx(7.0) and full['arch'] == archs[0]
  assert r['baselines']['flops']['regret'][-1]['regret'] == pytest.approx(0)
  # ten FLOPs groups of 3: the scores order the first five right, the last
  # five backwards -> mean within-decile rho = 0
  x = np.arange(30.0)
  y = np.concatenate([g if i < 5 else g[::-1]
                      for i, g in enumerate(np.arange(30.0).reshape(10, 3))])
  assert rank.within_decile_spearman(x, y, np.arange(30.0)) == pytest.approx(0)
  assert rank.within_decile_spearman(x, x, np.arange(30.0)) == pytest.approx(1)
  # the truly best tenth of 40 (4 of them): ordered backwards there, rightly
  # everywhere else -> -1 among the top, whatever the global rho says
  y = np.arange(40.0)
  x = np.concatenate([np.arange(36.0), [39.0, 38.0, 37.0, 36.0]])
  assert rank.top_decile_spearman(x, y) == pytest.approx(-1)
  assert rank.correlations(x, y)['spearman'] > 0.99
  assert rank.top_decile_spearman(y, y) == pytest.approx(1)


@pytest.mark.skipif(not TRUTH.exists(), reason='needs ../shared')
def test_log_channel_scores_equal_the_baseline(tmp_path):
  truth = rank.read_truth(TRUTH)
  assert len(truth) == 2048
  scores = _scores(truth, lambda a: sum(math.log(int(c)) for c in a.split(':')))
  r = rank.evaluate(scores, truth)
  assert r['spearman'] == pytest.approx(r['baselines']['log_channels']['spearman'])
  assert r['baselines']['log_channels']['spearman'] > 0.9
  path = tmp_path / 'scores.csv'
  with open(path, 'w') as f:
    f.write('arch,score,flops,params\n')
    for a, (s, fl, pa) in scores.items():
      f.write(f'{a},{s},{fl},{pa}\n')
  out = subprocess.run([sys.executable, '-m', 'bossnax.rank',
                        f'--scores={path}', f'--truth={TRUTH}', '--json',
                        f'--plot={tmp_path / "fig.png"}'],
                       capture_output=True, text=True, cwd=ROOT, check=True)
  obj = json.loads(out.stdout)
  assert {'kendall', 'spearman', 'pearson', 'n', 'baselines',
          'within_decile_spearman', 'top_decile_spearman', 'regret'} <= set(obj)
  assert obj['n'] == 2048 and set(obj['baselines']) == {
      'params', 'flops', 'log_channels'}
  assert (tmp_path / 'fig.png').stat().st_size > 1000
  human = subprocess.run([sys.executable, '-m', 'bossnax.rank',
                          f'--scores={path}', f'--truth={TRUTH}'],
                         capture_output=True, text=True, cwd=ROOT, check=True)
  assert 'log_channels' in human.stdout and 'Spearman' in human.stdout


def test_cli_errors_are_one_line(tmp_path):
  bad = tmp_path / 's.csv'
  bad.write_text('arch,value\n8:8:8:8:8,1\n')
  truth = tmp_path / 't.csv'
  truth.write_text('arch,acc\n16:8:8:8:8,50\n')
  for args, msg in ((['--scores=/nope.csv'], 'not found'),
                    ([f'--scores={bad}'], "no 'score' column")):
    out = subprocess.run([sys.executable, '-m', 'bossnax.rank', *args,
                          f'--truth={truth}'], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 2 and msg in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
  good = tmp_path / 'g.csv'
  good.write_text('arch,score,flops,params\n8:8:8:8:8,1,1,1\n')
  out = subprocess.run([sys.executable, '-m', 'bossnax.rank',
                        f'--scores={good}', f'--truth={truth}'],
                       capture_output=True, text=True, cwd=ROOT)
  assert out.returncode == 2 and 'same search space' in out.stderr


def test_per_layer_width_report_by_hand(tmp_path):
  """The sanity report needs no ground truth: on the full product of three
  widths, score = c0 gives c0 exactly +1 and every other layer 0 (they are
  independent of c0), score = -c3 gives c3 exactly -1; the CLI prints it
  alone without --truth, and a non-NATS scores file fails in one line."""
  import itertools
  archs = list(itertools.product((8, 16, 24), repeat=5))
  key = lambda a: ':'.join(map(str, a))
  up = rank.layer_report({key(a): (a[0],) for a in archs})
  assert list(up) == ['c0', 'c1', 'c2', 'c3', 'c4']
  assert up['c0'] == pytest.approx(1.0)
  assert all(abs(up[c]) < 1e-9 for c in ('c1', 'c2', 'c3', 'c4'))
  down = rank.layer_report({key(a): (-a[3],) for a in archs})
  assert down['c3'] == pytest.approx(-1.0) and abs(down['c0']) < 1e-9
  rows = ['arch,score,flops,params'] + [f'{key(a)},{-a[3]},1,1' for a in archs]
  path = tmp_path / 'scores.csv'
  path.write_text('\n'.join(rows) + '\n')
  report = rank.layer_report(rank.read_scores(path))
  assert report == pytest.approx(down)
  out = subprocess.run([sys.executable, '-m', 'bossnax.rank',
                        f'--scores={path}', '--json'], capture_output=True,
                       text=True, cwd=ROOT)
  assert out.returncode == 0, out.stderr
  assert json.loads(out.stdout)['per_layer_width_spearman'] == pytest.approx(
      report)
  other = tmp_path / 'hytra.csv'
  other.write_text('arch,score,flops,params\n[[1],[0]],1,1,1\n[[0],[1]],2,1,1\n')
  out = subprocess.run([sys.executable, '-m', 'bossnax.rank',
                        f'--scores={other}'], capture_output=True, text=True,
                       cwd=ROOT)
  assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(not TRUTH.exists(), reason='needs ../shared')
def test_comparison_harness_reports_finished_runs(tmp_path):
  """benchmarks/method_comparison.py on finished workdirs (none is run
  again): each row's correlations are rank.evaluate's of its scores.csv, the
  log-channels baseline is there, and the figure is written."""
  sys.path.insert(0, str(ROOT / 'benchmarks'))
  import method_comparison
  truth = rank.read_truth(TRUTH)
  rng = np.random.default_rng(0)
  made = {'bossnas': _scores(truth, lambda a: truth[a] + 3 * rng.normal()),
          'supervised': _scores(list(truth)[:300], lambda a: -truth[a])}
  for m, scores in made.items():
    (tmp_path / m).mkdir()
    with open(tmp_path / m / 'scores.csv', 'w') as f:
      f.write('arch,score,flops,params\n')
      for a, (s, fl, pa) in scores.items():
        f.write(f'{a},{s},{fl},{pa}\n')
  assert method_comparison.main(['--space=nats', '--preset=quick',
                                 f'--workdir={tmp_path}',
                                 '--methods=bossnas,supervised']) == 0
  table = json.loads((tmp_path / 'comparison.json').read_text())
  rows = {r['method']: r for r in table['rows']}
  for m, scores in made.items():
    r = rank.evaluate(scores, truth)
    assert rows[m]['spearman'] == pytest.approx(r['spearman'])
    assert rows[m]['n'] == len(scores)
  assert rows['supervised']['spearman'] == pytest.approx(-1)
  assert table['baselines']['log_channels']['spearman'] > 0.9
  assert table['baselines']['log_channels']['n'] == 2048
  png = (tmp_path / 'comparison.png').read_bytes()
  assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 20_000


@pytest.mark.skipif(not TRUTH.exists(), reason='needs ../shared')
def test_too_few_scored_truth_architectures_is_a_note_not_a_crash(
    tmp_path, caplog):
  """A search that evaluates a few architectures (evolution on NATS) may
  share only one or two with the truth sample: rank says so in one line,
  and the main run's report logs it after writing its ranking."""
  import ml_collections
  from bossnax.main import print_correlations
  truth = rank.read_truth(TRUTH)
  two = dict(list(_scores(list(truth)[:2], lambda a: 1.0).items()) +
             [('8:8:8:8:8', (0.5, 1.0, 2.0))] * ('8:8:8:8:8' not in truth))
  with pytest.raises(ValueError, match='only 2 of the .* search.archs_file'):
    rank.evaluate(two, truth)
  with open(tmp_path / 'scores.csv', 'w') as f:
    f.write('arch,score,flops,params\n')
    for a, (s, fl, pa) in two.items():
      f.write(f'{a},{s},{fl},{pa}\n')
  config = ml_collections.ConfigDict({'search': {'truth_file': str(TRUTH)}})
  print_correlations(config, str(tmp_path))  # no exception
  assert 'no correlations' in caplog.text and 'only 2' in caplog.text


def test_print_ranking_writes_to_the_stream_of_the_call(monkeypatch):
  """print_ranking's default stream is sys.stdout when it is called, not
  when bossnax.main was imported (a test that imported it under capsys
  left a closed stream behind for every later run in that process)."""
  import io
  from bossnax.main import print_ranking
  now = io.StringIO()
  monkeypatch.setattr(sys, 'stdout', now)
  print_ranking({'best': '8:8:8:8:8', 'top': []})
  assert '8:8:8:8:8' in now.getvalue()
