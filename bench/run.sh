#!/usr/bin/env bash
# Regenerate docs/performance.md: build the benchmark (Release), then time
# kdlib against PyTorch and against the memory bandwidth in one run.
# Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
BUILD=${KD_BUILD_DIR:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target kd-bench >/dev/null
/usr/bin/python3 bench/compare_torch.py --bench "$BUILD/bench/kd-bench" --markdown docs/performance.md "$@"
