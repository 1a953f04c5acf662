"""The rank command: correlations, baselines, deciles, regret, CLI."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from bossnax import rank
from conftest import ROOT

TRUTH = (ROOT.parent / 'shared' / 'benchmarks' /
         'nats_sss_cifar10_sample2048.csv')
KEYS = {'kendall', 'spearman', 'pearson', 'n', 'baselines',
        'within_decile_spearman', 'regret'}


def _size(a):
  return float(sum(int(c) for c in a.split(':')))


def _evaluate(truth, score, flops=_size):
  """evaluate() with score(arch), flops(arch) and params = 2 * flops."""
  return rank.evaluate({a: score(a) for a in truth},
                       {a: flops(a) for a in truth},
                       {a: 2 * flops(a) for a in truth}, truth)


def _cli(*args):
  return subprocess.run([sys.executable, '-m', 'bossnax.rank', *map(str, args)],
                        capture_output=True, text=True, cwd=ROOT)


def _write_scores(path, scores, flops, params):
  with open(path, 'w') as f:
    f.write('arch,score,flops,params\n')
    for a in scores:
      f.write(f'{a},{scores[a]},{flops[a]},{params[a]}\n')


def test_correlations_by_hand():
  truth = {'8:8:8:8:8': 1.0, '8:8:8:8:16': 2.0, '8:8:8:8:24': 3.0,
           '8:8:8:8:32': 4.0}
  up = _evaluate(truth, lambda a: truth[a] ** 3)  # monotone, not linear
  assert up['spearman'] == pytest.approx(1) and up['kendall'] == pytest.approx(1)
  assert 0.9 < up['pearson'] < 1 and up['n'] == 4
  down = _evaluate(truth, lambda a: -truth[a])
  assert down['spearman'] == pytest.approx(-1)
  assert down['kendall'] == pytest.approx(-1)
  assert down['pearson'] == pytest.approx(-1)
  # one discordant pair out of 6: Kendall = (5 - 1) / 6; Spearman from
  # d = (1, -1, 0, 0): 1 - 6 * 2 / (4 * 15) = 0.8
  swapped = {'8:8:8:8:8': 2.0, '8:8:8:8:16': 1.0, '8:8:8:8:24': 3.0,
             '8:8:8:8:32': 4.0}
  r = _evaluate(truth, lambda a: swapped[a])
  assert r['kendall'] == pytest.approx(4 / 6)
  assert r['spearman'] == pytest.approx(0.8)
  assert set(r['baselines']) == {'params', 'flops', 'log_channels'}
  assert r['baselines']['flops']['spearman'] == pytest.approx(1)


def test_within_decile_spearman_by_hand():
  # ten FLOPs groups of 3: the scores order the first five right and the
  # last five backwards -> mean within-decile rho = 0, while overall ~ 1
  x = np.arange(30.0)
  y = np.concatenate([g if i < 5 else g[::-1]
                      for i, g in enumerate(np.arange(30.0).reshape(10, 3))])
  flops = np.arange(30.0)[::-1]  # order of flops, not of x, makes the groups
  assert rank.within_decile_spearman(x, y, flops) == pytest.approx(0)
  assert rank.within_decile_spearman(x, x, flops) == pytest.approx(1)
  # 3 of the 10 groups reversed -> (7 - 3) / 10
  y3 = np.concatenate([g if i < 7 else g[::-1]
                       for i, g in enumerate(np.arange(30.0).reshape(10, 3))])
  assert rank.within_decile_spearman(x, y3, x) == pytest.approx(0.4)


def test_regret_by_hand():
  archs = [f'8:8:8:8:{8 * (i + 1)}' for i in range(8)]
  acc = dict(zip(archs, [1, 2, 3, 4, 5, 6, 7, 8.0]))
  # scores prefer the smallest net: regret = best - worst within the budget
  r = _evaluate(acc, lambda a: -int(a.split(':')[-1]))
  flops = np.array([_size(a) for a in archs])
  assert [g['budget_quantile'] for g in r['regret']] == [0.1, 0.25, 0.5,
                                                          0.75, 1.0]
  for g in r['regret']:
    fit = [a for a in archs if _size(a) <= g['flops_budget']]
    assert g['flops_budget'] == pytest.approx(
        np.quantile(flops, g['budget_quantile']))
    assert g['arch'] == archs[0]
    assert g['regret'] == pytest.approx(max(acc[a] for a in fit) - 1)
  assert r['regret'][-1]['regret'] == pytest.approx(7.0)
  # flops picks the biggest fitting net, which is the best here: regret 0
  assert all(g['regret'] == 0 for g in r['baselines']['flops']['regret'])
  # a pick in the middle: scores peak at acc 5 -> full-budget regret 3
  r = _evaluate(acc, lambda a: -abs(acc[a] - 5))
  assert r['regret'][-1] == {'budget_quantile': 1.0, 'flops_budget': 80.0,
                             'arch': archs[4], 'regret': 3.0}


def test_log_channels_only_when_every_arch_parses():
  truth = {'a|b': 1.0, 'c|d': 2.0, 'e|f': 3.0}
  r = _evaluate(truth, lambda a: truth[a], flops=lambda a: truth[a])
  assert set(r['baselines']) == {'params', 'flops'}
  assert rank.log_channels('8:16') == pytest.approx(math.log(128))
  assert rank.log_channels('8:x') is None and rank.log_channels('0:8') is None


def test_constant_scores_give_null_json():
  truth = {'8:8': 1.0, '8:16': 2.0, '16:16': 3.0}
  r = _evaluate(truth, lambda a: 0.0)
  assert math.isnan(r['spearman'])
  assert json.loads(rank.to_json(r))['spearman'] is None


@pytest.mark.skipif(not TRUTH.exists(), reason='needs ../shared')
def test_log_channel_scores_equal_the_baseline(tmp_path):
  truth = rank.read_truth(TRUTH)
  assert len(truth) == 2048
  r = _evaluate(truth, rank.log_channels)
  logc = r['baselines']['log_channels']
  for k in ('kendall', 'spearman', 'pearson', 'within_decile_spearman'):
    assert r[k] == pytest.approx(logc[k])
  assert logc['spearman'] > 0.9
  # CLI: a scores file missing 48 archs of the truth, json and plot
  archs = list(truth)[48:]
  scores = {a: rank.log_channels(a) for a in archs}
  path = tmp_path / 'scores.csv'
  _write_scores(path, scores, {a: _size(a) for a in archs},
                {a: _size(a) ** 2 for a in archs})
  out = _cli(f'--scores={path}', f'--truth={TRUTH}', '--json',
             f'--plot={tmp_path / "fig.png"}')
  assert out.returncode == 0, out.stderr
  obj = json.loads(out.stdout)
  assert KEYS <= set(obj) and obj['n'] == 2000
  assert set(obj['baselines']) == {'params', 'flops', 'log_channels'}
  for b in obj['baselines'].values():
    assert {'kendall', 'spearman', 'pearson', 'n',
            'within_decile_spearman'} <= set(b)
  assert set(obj['regret'][0]) >= {'budget_quantile', 'flops_budget', 'arch',
                                   'regret'}
  assert obj['spearman'] == pytest.approx(
      obj['baselines']['log_channels']['spearman'])
  assert '48 architectures' in out.stderr
  assert (tmp_path / 'fig.png').read_bytes()[:4] == b'\x89PNG'
  human = _cli(f'--scores={path}', f'--truth={TRUTH}')
  assert human.returncode == 0
  assert 'log_channels' in human.stdout and 'Spearman' in human.stdout


def test_truth_column_detection(tmp_path):
  scores = tmp_path / 's.csv'
  _write_scores(scores, {'8:8': 1, '8:16': 2, '16:16': 3},
                {'8:8': 1, '8:16': 2, '16:16': 3},
                {'8:8': 1, '8:16': 2, '16:16': 3})
  two = tmp_path / 'two.csv'
  two.write_text('arch,top1_acc,top5_acc\n8:8,3,1\n8:16,2,2\n16:16,1,3\n')
  out = _cli(f'--scores={scores}', f'--truth={two}', '--json')
  assert out.returncode == 2 and '--truth_column' in out.stderr
  assert len(out.stderr.strip().splitlines()) == 1
  out = _cli(f'--scores={scores}', f'--truth={two}', '--json',
             '--truth_column=top5_acc')
  assert json.loads(out.stdout)['spearman'] == pytest.approx(1)
  # no 'acc' name: the last numeric column (not the text one after it)
  last = tmp_path / 'last.csv'
  last.write_text('arch,index,error,note\n8:8,0,3,x\n8:16,1,2,y\n'
                  '16:16,2,1,z\n')
  assert rank.read_truth(last) == {'8:8': 3, '8:16': 2, '16:16': 1}


def test_cli_errors_are_one_line(tmp_path):
  good = tmp_path / 'g.csv'
  good.write_text('arch,score,flops,params\n8:8:8:8:8,1,1,1\n')
  no_score = tmp_path / 'ns.csv'
  no_score.write_text('arch,value,flops,params\n8:8:8:8:8,1,1,1\n')
  no_arch = tmp_path / 'na.csv'
  no_arch.write_text('name,score,flops,params\n8:8:8:8:8,1,1,1\n')
  bad_num = tmp_path / 'bn.csv'
  bad_num.write_text('arch,score,flops,params\n8:8:8:8:8,oops,1,1\n')
  truth = tmp_path / 't.csv'
  truth.write_text('arch,acc\n16:8:8:8:8,50\n')
  cases = (([f'--scores={tmp_path}/nope.csv', f'--truth={truth}'],
            'not found'),
           ([f'--scores={good}', f'--truth={tmp_path}/nope.csv'],
            'not found'),
           ([f'--scores={no_score}', f'--truth={truth}'], "no 'score' column"),
           ([f'--scores={no_arch}', f'--truth={truth}'], "no 'arch' column"),
           ([f'--scores={good}', f'--truth={no_arch}'], "no 'arch' column"),
           ([f'--scores={bad_num}', f'--truth={truth}'], 'not a number'),
           ([f'--scores={good}', f'--truth={truth}'], 'same search space'),
           ([f'--scores={good}', f'--truth={truth}', '--truth_column=x'],
            '--truth_column'))
  for args, msg in cases:
    out = _cli(*args)
    assert out.returncode == 2 and msg in out.stderr, (args, out.stderr)
    assert len(out.stderr.strip().splitlines()) == 1 and not out.stdout
