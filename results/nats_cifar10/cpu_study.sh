#!/usr/bin/env bash
# The reduced-budget CPU study of docs/results.md ("A CPU-budget study"): the
# 5,085 real CIFAR-10 images of ../shared at 16x16, small heads, 4 epochs per
# block, batch 64, width groups 4 (exact, and what makes it fit on 2 cores),
# scored on all 1,017 test images. Run from the repository root:
#   bash results/nats_cifar10/cpu_study.sh [DATA_DIR] [WORKDIR_PREFIX]
# DATA_DIR as for reproduce.sh. About 25 min per training run on 2 cores, and
# about 10 min per re-scoring variant.
set -u
D=${1:-}; W=${2:-workdir/cpu_study}
COMMON="--config.data.source=npz --config.data.train_images=0 \
 --config.train.epochs_per_block=4 --config.train.batch_size=64 \
 --config.train.width_groups=4 --config.train.warmup_epochs=0.5 \
 --config.train.log_every_steps=20 --config.search.num_images=0 \
 --config.search.batch_size=128 --config.search.calib_batch=256 \
 --config.search.width_groups=4 --config.search.path_chunk=4 \
 --config.dtype=float32"
# 4 uniform paths per step, then the scoring variants on that supernet
CONFIG=configs/nats_cifar10.py:quick VARIANTS="centre=raw;recalibrate_bn=False" \
EXTRA="$COMMON --config.train.paths_per_step=4 --config.train.fair=False" \
  bash results/nats_cifar10/reproduce.sh "$D" "${W}_u4"
# 8 fair paths per step (the paper's sampler), no variants
CONFIG=configs/nats_cifar10.py:quick BUDGET_S=1 \
EXTRA="$COMMON --config.train.paths_per_step=8 --config.train.fair=True" \
  bash results/nats_cifar10/reproduce.sh "$D" "${W}_f8"
