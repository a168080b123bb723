#!/usr/bin/env bash
# The main demo: build kdlib and its examples, then run the distillation demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
BUILD=${KD_BUILD_DIR:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j "$(nproc)" >/dev/null
if [ -x "$BUILD/examples/kd-distill" ]; then
  exec "$BUILD/examples/kd-distill" "$@"
fi
exec "$BUILD/examples/kd-loss-demo" "$@"
