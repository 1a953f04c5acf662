#!/usr/bin/env bash
# The accelerator benchmarks of docs/performance.md in one command (prints a
# figure per line; logs under ${OUT:-/tmp/bossnax_bench}).
#   bash benchmarks/gpu_suite.sh [DATA_NPZ]
set -u
OUT=${OUT:-/tmp/bossnax_bench}; mkdir -p "$OUT"
NPZ=${1:-../shared/data/cifar10_real_subset.npz}
C=configs/nats_cifar10.py:real
R="--config.data.path=$NPZ"
b() { echo "== $*"; timeout 300 "$@" 2>&1 | grep -v -E "^(WARNING|I0000|E0000)" | tail -6; }
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null
python benchmarks/matmul_peak.py | tee "$OUT/matmul.txt"
# MFU denominator: the measured bf16 matrix-product rate.
PEAK=$(awk '/^bfloat16/{print $(NF-3)}' "$OUT/matmul.txt"); PEAK=${PEAK:-0}
for blk in 0 1 2; do
  b python benchmarks/train_step.py --config=$C $R --block=$blk --steps=20 --peak_tflops=$PEAK
done
b python benchmarks/train_step.py --config=$C $R --block=0 --steps=20 --config.dtype=bfloat16 --peak_tflops=$PEAK
b python benchmarks/train_step.py --config=$C $R --block=0 --steps=10 --config.train.batch_size=1024 --peak_tflops=$PEAK
b python benchmarks/train_step.py --config=$C $R --block=0 --steps=20 --config.train.paths_per_step=4 --config.train.fair=False --peak_tflops=$PEAK
b python benchmarks/conv_in_switch.py
b python benchmarks/input_pipeline.py --config=$C $R --steps=200
for blk in 0 1 2; do
  b python benchmarks/score_block.py --config=$C $R --block=$blk --images=1024 --repeats=2
done
# Paths grouped by width (train.width_groups / search.width_groups), bf16.
for g in 2 4 8; do
  b python benchmarks/train_step.py --config=$C $R --block=0 --steps=20 --config.dtype=bfloat16 --config.train.width_groups=$g --peak_tflops=$PEAK
done
for blk in 1 2; do
  b python benchmarks/train_step.py --config=$C $R --block=$blk --steps=20 --config.dtype=bfloat16 --peak_tflops=$PEAK
  b python benchmarks/train_step.py --config=$C $R --block=$blk --steps=20 --config.dtype=bfloat16 --config.train.width_groups=8 --peak_tflops=$PEAK
done
for blk in 0 1 2; do
  b python benchmarks/score_block.py --config=$C $R --block=$blk --images=1024 --repeats=2 --config.search.width_groups=4
done
# HyTra: a path inside the supernet against the same network standalone.
b python benchmarks/hytra_path.py --arch=ResNet50-T --batch=256 --dtype=bfloat16 --peak_tflops=$PEAK --steps=10
b python benchmarks/hytra_path.py --arch=ResNet50-T --batch=256 --dtype=float32 --peak_tflops=$PEAK --steps=10
