#!/usr/bin/env bash
# A TPU pod slice: the same command on every host through gcloud; each host
# runs one process and jax.distributed.initialize() finds its peers itself.
#   launch/tpu_pod.sh TPU_NAME ZONE WORKDIR [--config.x=y ...]
#   DRY_RUN=1 launch/tpu_pod.sh ...   prints the gcloud line only
# The repo must be checked out at ~/bossnax on every host (with its venv at
# ~/bossnax/.venv); WORKDIR and data_dir must be on a disk every host mounts
# (NFS/Filestore): Orbax writes one checkpoint from all hosts together.
set -euo pipefail
if [[ $# -lt 3 ]]; then
  echo "usage: launch/tpu_pod.sh TPU_NAME ZONE WORKDIR [--config.x=y ...]" >&2
  exit 2
fi
tpu=$1 zone=$2 workdir=$3
shift 3
config=${CONFIG:-configs/nats_cifar10.py}
remote="cd ~/bossnax && . .venv/bin/activate && python -m bossnax.main --config=$config --workdir=$workdir --config.distributed.mode=on $*"
cmd=(gcloud compute tpus tpu-vm ssh "$tpu" --zone="$zone" --worker=all
     --command="$remote")
if [[ -n "${DRY_RUN:-}" ]]; then printf '%q ' "${cmd[@]}"; echo; exit 0; fi
exec "${cmd[@]}"
