#!/usr/bin/env bash
# Issue 21's whole GPU agenda in one device call (benchmarks/gpu_session.py
# says what it measures): at most ~9 minutes, a table on stdout, JSON and
# logs in $OUT (or /tmp/gpu_session).
#
#   bash benchmarks/gpu_session.sh               # on the device machine
#   bash benchmarks/gpu_session.sh --cpu-check   # here: same code paths, tiny
#
# The device image lacks ml-collections: carry it as a wheel. Once, here:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 -d .whl ml_collections
# then run(command='bash benchmarks/gpu_session.sh', carry=['.whl'],
# timeout_s=600): this script installs .whl/*.whl into /tmp/site first.
set -u
cd "$(dirname "$0")/.."
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
# one compilation cache for the session and its end-to-end subprocess
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/jax_cache}
OUT=${OUT:-/tmp/gpu_session}
# the session bounds itself (--budget_s); timeout is the backstop
timeout 570 python3 benchmarks/gpu_session.py --out="$OUT" "$@"
