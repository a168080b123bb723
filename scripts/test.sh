#!/usr/bin/env bash
# Build kdlib and run every test: the normal build, then the whole suite again
# under AddressSanitizer + UndefinedBehaviorSanitizer, the examples' smoke runs
# under Valgrind, the thread test under ThreadSanitizer, the ABI check and a
# bounded fuzz run (KD_FUZZ_SECONDS, default 120; 0 skips it); first, that every C
# file is formatted (scripts/format.sh --check).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
JOBS=$(nproc)
BUILD=${KD_BUILD_DIR:-build}

echo "== format (.clang-format): bash scripts/format.sh --check"
bash scripts/format.sh --check

echo "== build and test ($BUILD)"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j "$JOBS"
ctest --test-dir "$BUILD" --output-on-failure -j "$JOBS"

echo "== build and test under ASan + UBSan ($BUILD-asan)"
SAN="-O1 -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
cmake -S . -B "$BUILD-asan" -DCMAKE_BUILD_TYPE=Debug -DKD_BUILD_BENCH=OFF \
  -DCMAKE_C_FLAGS="$SAN" -DCMAKE_EXE_LINKER_FLAGS="$SAN" -DCMAKE_SHARED_LINKER_FLAGS="$SAN" >/dev/null
cmake --build "$BUILD-asan" -j "$JOBS"
# LD_PRELOAD-free: Python tests cannot load an ASan library, they run in the normal build only.
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir "$BUILD-asan" --output-on-failure -j "$JOBS" -LE nosan

echo "== examples' smoke runs under Valgrind memcheck ($BUILD)"
bash scripts/valgrind-smoke.sh "$BUILD"

echo "== thread test under ThreadSanitizer ($BUILD-tsan)"
KD_BUILD_DIR="$BUILD" bash scripts/tsan.sh

echo "== ABI against abi/libkd.abi ($BUILD-abi)"
KD_BUILD_DIR="$BUILD" bash abi/check.sh

FUZZ_SECONDS=${KD_FUZZ_SECONDS:-120}
if [ "$FUZZ_SECONDS" -gt 0 ]; then
  echo "== libFuzzer on the public API, ${FUZZ_SECONDS}s ($BUILD-fuzz)"
  KD_FUZZ_BUILD="$BUILD-fuzz" bash fuzz/run.sh run "$FUZZ_SECONDS"
fi
