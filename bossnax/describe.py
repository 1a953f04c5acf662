r"""Print an architecture's cost as one JSON object.

  python -m bossnax.describe --space=nats --arch=8:8:40:32:40
  python -m bossnax.describe --space=hytra --arch=BossNet-T0 --resolution=224
  python -m bossnax.describe --space=mbconv --arch=11\|1111\|1101\|1011\|1101
  python -m bossnax.describe --space=mbconv --arch=efficientnet_b0
  python -m bossnax.describe --space=vit --arch=AutoFormer-S   # T, S, B
  python -m bossnax.describe --space=dynresnet --arch=resnet50  # or resnet101
  python -m bossnax.describe --space=mbconv --bench=../shared/benchmarks/mbconv_23_archs_imagenet.json

Spaces may add fields (e.g. a picture written with --picture=FILE.png).
"""

from __future__ import annotations

import argparse
import json
import sys

import ml_collections

from bossnax.cli import fail

from bossnax.spaces import NAMES, make_space


def main(argv=None):
  parser = argparse.ArgumentParser(prog='python -m bossnax.describe',
                                   description=__doc__.splitlines()[0])
  parser.add_argument('--space', required=True, choices=NAMES)
  parser.add_argument('--arch', default='',
                      help='a named architecture or the space\'s string form')
  parser.add_argument('--layout', default='',
                      help='mbconv: the layout (bossnas, dna, spos); vit: '
                      'T, S or B')
  parser.add_argument('--bench', default='',
                      help='mbconv: a JSON of architectures (the 23-architecture '
                      'benchmark): one line per architecture')
  parser.add_argument('--resolution', type=int, default=None)
  parser.add_argument('--num_classes', type=int, default=None)
  parser.add_argument('--picture', default='',
                      help='write a PNG of the architecture (if the space '
                      'draws one)')
  args = parser.parse_args(argv)
  cfg = ml_collections.ConfigDict({'name': args.space})
  if args.layout:
    cfg.layout = args.layout
  if bool(args.arch) == bool(args.bench):
    parser.error('give --arch or --bench')
  if args.num_classes:
    cfg.num_classes = args.num_classes
  try:
    space = make_space(cfg)
    kw = {'resolution': args.resolution} if args.resolution else {}
    if args.bench:
      for arch in space.benchmark(args.bench)[0]:
        print(json.dumps(space.describe(arch, **kw)))
      return 0
    if hasattr(space, 'describe_named'):  # names can carry a variant (T1)
      out = space.describe_named(args.arch, **kw)  # or another layout's
    else:
      out = space.describe(space.parse(args.arch), **kw)
    if args.picture:
      space.draw(space.parse(args.arch), args.picture)
      out['picture'] = args.picture
  except (ValueError, NotImplementedError) as e:
    return fail(e)
  print(json.dumps(out))
  return 0


if __name__ == '__main__':
  sys.exit(main())
