#!/usr/bin/env bash
# Where the NATS train step spends its time on a GPU (docs/performance.md):
# a Perfetto trace of the bf16 block-0 step, then the step with small SSL
# heads and with one path. Needs the real-data npz under .gpu/ (or edit C).
C="--config=configs/nats_cifar10.py:real --config.data.path=.gpu/cifar10_real_subset.npz --config.dtype=bfloat16 --block=0 --steps=10 --warmup=2 --peak_tflops=794"
b() { echo "== $*"; timeout 150 python benchmarks/train_step.py $C "$@" 2>&1 | grep -E "^(space|compile|XLA)"; }
b --profile_dir=/tmp/prof
f=$(find /tmp/prof -name "*.json.gz" | head -1); cp "$f" $OUT/trace.json.gz; ls -la $OUT
b --config.model.embed_dim=128 --config.model.proj_hidden=256 --config.model.proj_dim=64 --config.model.pred_hidden=256
b --config.train.paths_per_step=1 --config.train.fair=False
