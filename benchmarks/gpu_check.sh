#!/usr/bin/env bash
# One prepared run for a lent GPU machine: the test suite (its CUDA cases run
# there instead of being skipped) and the GPU throughput benchmark. Expects the
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
if [ -d "$DATA" ]; then
    python benchmarks/bench_gpu.py --data "$DATA"
else
    python benchmarks/bench_gpu.py
fi
