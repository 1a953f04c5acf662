#!/usr/bin/env bash
# The real NATS run of docs/results.md, then the scoring variants on the same
# trained supernet (bossnax.rescore). Run from the repository root:
#   bash results/nats_cifar10/reproduce.sh [DATA_DIR] [WORKDIR]
# DATA_DIR holds cifar10_real_subset.npz and nats_sss_cifar10_sample2048.csv
# (default: ../shared/data and ../shared/benchmarks, as in the repo layout).
# Knobs of docs/results.md: EXTRA adds overrides to the run (training knobs,
# e.g. EXTRA="--config.train.paths_per_step=4 --config.train.fair=False");
# VARIANTS lists the re-scoring variants, ';'-separated search overrides
# (default: the three below; e.g. VARIANTS="view_pairs=4;calib_batch=1024").
# On a WORKDIR whose run has finished, main only writes its results again.
set -u
D=${1:-}; W=${2:-workdir/nats_real}; OUT=${OUT:-$W/out}; mkdir -p "$OUT"
NPZ=${D:+$D/cifar10_real_subset.npz}; NPZ=${NPZ:-../shared/data/cifar10_real_subset.npz}
TRUTH=${D:+$D/nats_sss_cifar10_sample2048.csv}
TRUTH=${TRUTH:-../shared/benchmarks/nats_sss_cifar10_sample2048.csv}
ARGS=(--config=${CONFIG:-configs/nats_cifar10.py:real} --config.data.path=$NPZ
      --config.search.truth_file=$TRUTH --config.dtype=bfloat16
      --config.train.checkpoint_every_steps=100000 ${EXTRA:-})
start=$(date +%s)
python -m bossnax.main "${ARGS[@]}" --workdir=$W 2>&1 | grep -v -E "^(W|I|E)[0-9]{4} " > "$OUT/main.log"
echo "main job wall time: $(( $(date +%s) - start )) s" | tee -a "$OUT/main.log"
pack() { tar czf "$OUT/results.tar.gz" -C "$W" --exclude=checkpoints --exclude=./out . ; }
pack
budget=${BUDGET_S:-1000000}
IFS=';' read -r -a VARS <<< "${VARIANTS:-centre=raw;recalibrate_bn=False;centre=raw --config.search.recalibrate_bn=False}"
for v in "${VARS[@]}"; do
  left=$(( budget - ($(date +%s) - start) ))
  [ $left -lt 60 ] && { echo "skipped $v: no time left" >> "$OUT/rescore.log"; continue; }
  name=$(echo "$v" | sed 's/ --config.search./+/g; s/=/-/g')
  echo "== variant --config.search.$v" >> "$OUT/rescore.log"
  timeout $left python -m bossnax.rescore "${ARGS[@]}" --config.search.$v \
      --workdir=$W --out=$W/variant_$name 2>&1 | grep -v -E "^(W|I|E)[0-9]{4} " >> "$OUT/rescore.log"
  pack
done
echo "total wall time: $(( $(date +%s) - start )) s" | tee -a "$OUT/rescore.log"
grep -h -E "^(best architecture|ranking |scores |params |flops |log_channels |per layer)|^==|largest|wall time" "$OUT/main.log" "$OUT/rescore.log"
