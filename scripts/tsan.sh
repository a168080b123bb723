#!/usr/bin/env bash
# ThreadSanitizer build of the thread-safety test (tests/test_threads.c):
# distinct handles used concurrently from 8 threads (each handle with 1 or 2
# OpenMP threads of its own), and results independent of the thread count.
# Fails on any data race report.
#   KD_BUILD_DIR (default build) -> builds in "$KD_BUILD_DIR-tsan".
# Built with clang so that OpenMP is LLVM's libomp, which TSan understands
# through the Archer tool (libarcher, from libomp-14-dev): GCC's libgomp is not
# instrumented and its barriers would be reported as races.  OpenBLAS (MCC's
# sgemm) is kept single-threaded for the same reason.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${KD_BUILD_DIR:-build}-tsan
CC=${KD_TSAN_CC:-clang}
ARCHER=$(dirname "$("$CC" -print-file-name=libomp.so)")/libarcher.so
[ -f "$ARCHER" ] || ARCHER=$(ls /usr/lib/llvm-*/lib/libarcher.so 2>/dev/null | head -n1)
SAN="-fsanitize=thread -fno-omit-frame-pointer -g"
# The static libkd and TSan's static runtime: a shared libkd would need the
# shared TSan runtime, which initialises too late for OpenBLAS's libquadmath.
cmake -S . -B "$BUILD" -DCMAKE_C_COMPILER="$CC" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DKD_BUILD_EXAMPLES=OFF -DKD_BUILD_BENCH=OFF -DKD_WERROR=OFF -DCMAKE_C_FLAGS="$SAN" >/dev/null
cmake --build "$BUILD" --target kd_static kd_testsupport -j "$(nproc)" >/dev/null
BLAS=$(sed -n 's/^KD_OPENBLAS_LIBRARY:FILEPATH=//p' "$BUILD/CMakeCache.txt")
"$CC" -std=c11 -D_DEFAULT_SOURCE $SAN -fopenmp -Iinclude -I"$BUILD/include" -Itests/support tests/test_threads.c \
  "$BUILD/src/libkd.a" "$BUILD/tests/libkd_testsupport.a" $(pkg-config --libs check) \
  "$BLAS" -lm -lpthread -o "$BUILD/test_threads"
TSAN_OPTIONS="ignore_noninstrumented_modules=1 halt_on_error=1 exitcode=66 second_deadlock_stack=1 ${TSAN_OPTIONS:-}" \
OMP_TOOL_LIBRARIES="$ARCHER" OPENBLAS_NUM_THREADS=1 CK_FORK=no CK_DEFAULT_TIMEOUT=900 \
  "$BUILD/test_threads"
echo "tsan: test_threads passed without data race reports"
