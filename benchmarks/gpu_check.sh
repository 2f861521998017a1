#!/usr/bin/env bash
# One prepared run for a lent GPU machine: the test suite (its CUDA cases run
# there instead of being skipped), the GPU throughput benchmark and the softmax
# recipe's step against its matrix products. Expects the
# package and its test extra installed in the active environment with a CUDA
# build of torch (see the device tool's page for what the machine has).
set -euo pipefail
cd "$(dirname "$0")/.."
python - <<'PY'
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY
python -m pytest -q -rs -p no:cacheprovider tests 2>&1 | tail -25
DATA="../shared/data/gowalla"
ARGS=()
if [ -d "$DATA" ]; then
    ARGS=(--data "$DATA")
fi
python benchmarks/bench_gpu.py "${ARGS[@]}"
# The softmax recipe's step against its matrix products, on the GPU.
python benchmarks/bench_recipe_step.py "${ARGS[@]}" --device cuda --rounds 5
