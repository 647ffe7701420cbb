#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): encoding, kNN, k-means, TEMI, zero-shot and scoring
# at ImageNet size on one CUDA GPU, with peak GPU memory; offline, under 8 minutes.
#
#   bash benchmarks/gpu_check.sh [--only encode knn ...] [--out gpu.json]
#
# Exits with status 2 and a message when no CUDA device is available (nothing is measured).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
# The hard limit: a check that hangs must not hold a lent GPU.
exec timeout --signal=INT --kill-after=20 "${GPU_CHECK_TIMEOUT:-480}" "$PYTHON" benchmarks/gpu_check.py "$@"
