"""Hand a searched architecture over: a JSON spec, and its trained weights.

  python -m bossnax.export --config=CONFIG --workdir=DIR --out=OUT \
      [--arch=NAME_OR_STRING] [--weights=online|target|none] [--evaluate]

writes OUT/spec.json (space, architecture, cost) and OUT/weights/ (Orbax):
the variables of the standalone network of that path, cut out of the
supernet of DIR's newest checkpoint. Without --arch it takes the best path
the run found (the first of its final pool). Without --workdir
(`--weights=none`) it writes the spec alone, for any architecture.
--evaluate: the standalone network with those weights on the test split,
no retraining (OUT/eval.json: top-1, top-5, loss).

  space, arch, spec = load_spec('OUT/spec.json')
  net, arch_vec = space.standalone(arch)
  variables = load_weights('OUT/weights', net, arch_vec, image_size)

The standalone network with these weights computes what the supernet
computes on that path (tests/test_hytra_supernet.py checks logits and
features). The official release can only print an encoding (its issue #11).
"""

from __future__ import annotations

import json
import os
import sys

import ml_collections

from bossnax.cli import run_main
from bossnax.config import ConfigError

FORMAT = 'bossnax.arch/1'


def _space_dict(space_cfg):
  return {k: (list(v) if isinstance(v, tuple) else v)
          for k, v in space_cfg.to_dict().items()}


def make_spec(space_cfg, space, arch, **extra):
  flops, params = space.flops_params(arch)
  spec = {'format': FORMAT, 'space': _space_dict(space_cfg),
          'arch': space.to_string(arch), 'flops': int(flops),
          'params': int(params)}
  spec.update(extra)
  return spec


def load_spec(path):
  """(space, arch, spec dict) from a spec.json."""
  from bossnax.spaces import make_space
  try:
    with open(path) as f:
      spec = json.load(f)
  except FileNotFoundError:
    raise ValueError(f'spec {path} not found: write one with python -m '
                     'bossnax.export') from None
  except json.JSONDecodeError as e:
    raise ValueError(f'spec {path} is not valid JSON ({e})') from None
  if spec.get('format') != FORMAT:
    raise ValueError(f'{path} is not a bossnax architecture spec (format '
                     f'{spec.get("format")!r}, expected {FORMAT!r})')
  space = make_space(ml_collections.ConfigDict(spec['space']))
  return space, space.parse(spec['arch']), spec


def standalone_variables(space, objective, state, arch, which='online'):
  """The standalone network's variables for `arch`, from a run's state
  (`which`: the objective's online or target weights)."""
  variables = objective.variables(state, which)
  return space.slice_variables(
      {name: tree['backbone'] for name, tree in variables.items()
       if 'backbone' in tree}, arch)  # (no batch_stats: LayerNorm nets)


def save_weights(path, variables):
  import orbax.checkpoint as ocp
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(os.path.abspath(path), variables, force=True)


def load_weights(path, net, arch_vec, image_size):
  """Weights written by `export`, checked against the network built from
  the spec (a wrong or corrupt folder fails with one line)."""
  import jax
  import jax.numpy as jnp
  import orbax.checkpoint as ocp
  x = jnp.zeros((1, image_size, image_size, 3))
  like = jax.eval_shape(lambda: net.init(jax.random.key(0), x, arch_vec,
                                         mode='train', output='logits'))
  try:
    with ocp.StandardCheckpointer() as ckpt:
      return ckpt.restore(os.path.abspath(path), like)
  except Exception as e:
    first = (str(e).strip().splitlines() or [repr(e)])[0][:200]
    raise ValueError(f'cannot load weights from {path} for this spec '
                     f'({first}): export them again') from None


def export(config, workdir, out, arch_text='', which='online'):
  """Write OUT/spec.json (+ OUT/weights unless which='none'); returns spec."""
  from bossnax import parallel
  from bossnax.checkpoint import Checkpointer
  from bossnax.spaces import make_space
  space = make_space(config.space)
  extra = {}
  if which == 'none':
    if not arch_text:
      raise ValueError('--weights=none writes a spec only: pass --arch=...')
    arch, variables = space.parse(arch_text), None
  else:
    if which not in ('online', 'target'):
      raise ValueError(f'--weights={which}: use online, target or none')
    if not os.path.isdir(os.path.join(workdir, 'checkpoints')):
      raise ValueError(f'no checkpoint in {workdir}/checkpoints: train with '
                       'python -m bossnax.main first')
    from bossnax.engine.supernet import Trainer
    from bossnax.methods import build_method
    from bossnax.run import FORMAT
    method = build_method(config, space)
    size = config.data.image_size
    trainer = Trainer(config, space, method.objective,
                      parallel.make_mesh(config.num_devices), 1,
                      (size, size, 3))
    ckpt = Checkpointer(os.path.join(workdir, 'checkpoints'), format=FORMAT)
    try:
      restored = ckpt.restore_latest(trainer.state_shapes())
    finally:
      ckpt.close()
    if restored is None:
      raise ValueError(f'no checkpoint in {workdir}/checkpoints: train with '
                       'python -m bossnax.main first')
    step, state, meta = restored
    if arch_text:
      arch = space.parse(arch_text)
    else:
      if meta['block'] < len(method.stages):
        raise ValueError(f'the run in {workdir} has not finished its search '
                         f'(block {meta["block"] + 1}): pass --arch=...')
      arch = method.searcher.best(meta)
    if not space.is_valid(arch):
      raise ValueError(f'{space.to_string(arch)} is not a path of the '
                       f'{space.name} space')
    variables = standalone_variables(space, method.objective, state, arch,
                                     which)
    extra = {'weights': which, 'workdir': os.path.abspath(workdir),
             'step': int(step), 'image_size': size}
  space_cfg = config.space.copy_and_resolve_references()
  if variables is not None and 'embed_dim' in space.space_kwargs:
    # the width adapters in the weights have the supernet's embed_dim
    space_cfg.embed_dim = config.model.embed_dim
  spec = make_spec(space_cfg, space, arch, **extra)
  if parallel.is_main_process():
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, 'spec.json'), 'w') as f:
      json.dump(spec, f, indent=1)
  if variables is not None:
    save_weights(os.path.join(out, 'weights'), variables)
  return spec


def evaluate(config, out, split='test'):
  """Top-1 / top-5 / cross-entropy of the exported standalone network of
  OUT (spec + weights) on `split` of the run's data, clean images, no
  training: what a subnet that inherits its weights is worth
  (OUT/eval.json)."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax
  from bossnax import parallel
  from bossnax.data import augment
  from bossnax.data.fixed import padded_indices, process_share
  from bossnax.data.sources import make_source
  space, arch, spec = load_spec(os.path.join(out, 'spec.json'))
  net, vec = space.standalone(arch)
  size = int(spec.get('image_size', config.data.image_size))
  variables = load_weights(os.path.join(out, 'weights'), net, vec, size)
  source = make_source(config.data, seed=config.seed)
  mesh = parallel.make_mesh(config.num_devices)
  batch = config.search.batch_size
  a = config.augment

  @jax.jit
  def counts(variables, x, y, w):
    logits = net.apply(variables, augment.eval_view(x, tuple(a.mean),
                                                    tuple(a.std)),
                       jnp.asarray(vec), mode='eval', output='logits')
    top5 = jax.lax.top_k(logits, min(5, logits.shape[-1]))[1]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    return jnp.stack([((top5[:, 0] == y) * w).sum(),
                      ((top5 == y[:, None]).any(-1) * w).sum(),
                      (ce * w).sum(), w.sum()])
  # this process's share of every global batch, padded with weight 0
  idx, weights = padded_indices(source.num_examples(split), batch)
  x, y = source.get(split, process_share(idx, batch))
  w = process_share(weights, batch)
  local = batch // jax.process_count()
  total = np.zeros(4)
  for start in range(0, len(w), local):
    part = lambda v: parallel.global_batch(mesh, np.asarray(
        v[start:start + local]))
    total += np.asarray(counts(variables, part(x),
                               part(np.asarray(y, np.int32)), part(w)))
  result = {'arch': spec['arch'], 'split': split, 'images': int(total[3]),
            'top1': total[0] / total[3], 'top5': total[1] / total[3],
            'loss': total[2] / total[3], 'flops': spec['flops'],
            'params': spec['params'],
            'note': 'the exported subnet with its inherited weights, no '
                    'retraining'}
  if parallel.is_main_process():
    with open(os.path.join(out, 'eval.json'), 'w') as f:
      json.dump(result, f, indent=1)
  return result


def _export(config, flags):
  if flags['weights'] != 'none' and not flags['workdir']:
    raise ConfigError('pass --workdir=DIR (a finished run) or '
                      '--weights=none --arch=... for a spec only')
  spec = export(config, flags['workdir'], flags['out'], flags['arch'],
                flags['weights'])
  print(json.dumps(spec))
  if str(flags['evaluate']).lower() in ('true', '1'):
    if flags['weights'] == 'none':
      raise ConfigError('--evaluate needs the weights: drop --weights=none')
    print(json.dumps(evaluate(config, flags['out'])))
  return 0


def main(argv=None):
  return run_main(_export, argv, {'workdir': '', 'out': None, 'arch': '',
                                  'weights': 'online', 'evaluate': False})


if __name__ == '__main__':
  sys.exit(main())
