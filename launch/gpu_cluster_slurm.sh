#!/usr/bin/env bash
# Several GPU nodes under SLURM: one process per node, all of a node's GPUs
# per process; jax.distributed.initialize() reads SLURM's environment.
#   sbatch --nodes=4 --gpus-per-node=8 launch/gpu_cluster_slurm.sh WORKDIR [--config.x=y ...]
#   DRY_RUN=1 launch/gpu_cluster_slurm.sh WORKDIR ...   prints the srun line only
# WORKDIR and the data dir must be on a filesystem every node sees (Orbax
# writes one checkpoint from all processes together).
#SBATCH --ntasks-per-node=1
#SBATCH --job-name=bossnax
set -euo pipefail
workdir=${1:?usage: sbatch launch/gpu_cluster_slurm.sh WORKDIR [--config.x=y ...]}
shift
config=${CONFIG:-configs/nats_cifar10.py}
cmd=(srun --ntasks-per-node=1 python -m bossnax.main --config="$config"
     --workdir="$workdir" --config.distributed.mode=on "$@")
if [[ -n "${DRY_RUN:-}" ]]; then printf '%q ' "${cmd[@]}"; echo; exit 0; fi
if [[ -z "${SLURM_JOB_ID:-}" ]]; then
  echo "error: not inside a SLURM job: submit with sbatch (or set DRY_RUN=1)" >&2
  exit 2
fi
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
exec "${cmd[@]}"
