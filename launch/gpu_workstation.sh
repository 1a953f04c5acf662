#!/usr/bin/env bash
# One host, all local GPUs: one process; jit shards the batch over every GPU.
#   launch/gpu_workstation.sh WORKDIR [--config.x=y ...]
#   DRY_RUN=1 launch/gpu_workstation.sh ...   prints the command only
# Data: --config.data.source=tfds --config.data.data_dir=/data/tfds (holding
# a prepared cifar10/, cifar100/ or imagenet2012/).
set -euo pipefail
workdir=${1:?usage: launch/gpu_workstation.sh WORKDIR [--config.x=y ...]}
shift
config=${CONFIG:-configs/nats_cifar10.py}
cmd=(python -m bossnax.main --config="$config" --workdir="$workdir"
     --config.distributed.mode=off "$@")
if [[ -n "${DRY_RUN:-}" ]]; then printf '%q ' "${cmd[@]}"; echo; exit 0; fi
cd "$(dirname "$0")/.."
exec "${cmd[@]}"
