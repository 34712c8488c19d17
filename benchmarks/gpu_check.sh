#!/usr/bin/env bash
# GPU check: run by hand on a machine with a CUDA GPU, never by CI.
# Runs the CUDA path of every phase (train -> prune -> finetune -> eval through the CLI, bf16 autocast,
# channels_last, a few steps each, 1 GPU) and records images/s of dense vs slimmed models.
#   bash benchmarks/gpu_check.sh [--dataset mnist5k] [--arch resnet20] [--repeats 20]
# Output: benchmarks/results/gpu_check.json (or the folder given in $OUT) and a table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible to torch')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec "$PY" benchmarks/gpu_check.py --out "${OUT:-benchmarks/results}" "$@"
