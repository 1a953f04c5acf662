#!/usr/bin/env bash
# Issue 13's GPU comparison, sized for one device call of at most 9 minutes:
# the real-subset run with the official conv init and a LARS trust ratio per
# width adapter (the defaults since 2026-12-02) and the official
# learning-rate sum (preset :real_budget), then re-scorings of the same
# supernet with the predictor's BN reset (the official metric) and with 4
# view pairs. main and every rescore rank against the shared 2,048-
# architecture sample and print the per-layer width report.
#
#   bash results/nats_cifar10/gpu_fidelity.sh DATA_DIR [WORKDIR]
#
# DATA_DIR holds cifar10_real_subset.npz and nats_sss_cifar10_sample2048.csv
# (../shared/data and ../shared/benchmarks here; on the device machine copy
# both into an ignored folder of the checkout, e.g. .gpu/, and carry it).
# Results go to $OUT (main.log, rescore.log, results.tar.gz with scores.csv,
# ranking.json and every variant's files). BUDGET_S (default 500) bounds the
# whole script: re-scorings that would not fit are skipped and say so.
#
# On the device machine (ml-collections and tensorboardX are not in its
# image: carry them as wheels, see ../.library/device/README.md):
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#   PYTHONPATH=/tmp/site OUT=$OUT bash results/nats_cifar10/gpu_fidelity.sh .gpu
#
# CPU check of the whole script (tiny budget and networks at 16x16, float32;
# its numbers mean nothing). On the 2-core CPU on 2026-12-02 with
# BUDGET_S=500 it took 8 min 21 s (main 310 s, mostly compiling and scoring
# the 64 + 64 + 8 paths; two re-scorings, the third skipped for time);
# TINY=1 gives it 1500 s for all three:
#   TINY=1 bash results/nats_cifar10/gpu_fidelity.sh "" /tmp/gpu_fidelity
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
export CONFIG=${CONFIG:-configs/nats_cifar10.py:real_budget}
export VARIANTS=${VARIANTS:-"predictor_bn=reset;view_pairs=4;predictor_bn=reset --config.search.view_pairs=4"}
if [ -n "${TINY:-}" ]; then
  export BUDGET_S=${BUDGET_S:-1500}
  EXTRA="--config.dtype=float32 --config.data.train_images=128
    --config.data.image_size=16 --config.train.batch_size=32
    --config.train.epochs_per_block=1 --config.train.paths_per_step=2
    --config.train.fair=False --config.model.embed_dim=32
    --config.model.proj_hidden=32 --config.model.proj_dim=16
    --config.model.pred_hidden=32 --config.search.num_images=32
    --config.search.batch_size=32 --config.search.calib_batch=16
    --config.search.path_chunk=64 ${EXTRA:-}"
  export EXTRA
fi
export BUDGET_S=${BUDGET_S:-500}
exec bash "$HERE/reproduce.sh" "$@"
