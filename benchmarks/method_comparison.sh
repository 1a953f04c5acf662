#!/bin/bash
# Every method on one benchmark, one table (benchmarks/method_comparison.py):
#   benchmarks/method_comparison.sh SPACE PRESET [WORKDIR] [-- --config.KEY=VALUE ...]
#   e.g. benchmarks/method_comparison.sh nats quick /tmp/cmp
set -euo pipefail
space=${1:?SPACE: nats, mbconv or hytra}
preset=${2:?PRESET: e.g. quick}
workdir=${3:-/tmp/bossnax_comparison_${space}_${preset}}
shift $(( $# < 3 ? $# : 3 ))
cd "$(dirname "$0")/.."
exec python benchmarks/method_comparison.py --space="$space" --preset="$preset" \
  --workdir="$workdir" "$@"
