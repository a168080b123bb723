#!/usr/bin/env bash
# Build and run the libFuzzer harness fuzz/fuzz_api.c over kdlib's public API.
#
#   bash fuzz/run.sh build                 build only (prints the binary's path)
#   bash fuzz/run.sh run SECONDS [JOBS]    build, then fuzz for SECONDS wall time
#                                          (JOBS parallel workers, default 1),
#                                          starting from fuzz/corpus/
#   bash fuzz/run.sh repro FILE...         build, then run the given inputs once
#                                          (e.g. fuzz/crashes/crash-*)
#
# The library is compiled by CMake with clang and
# -fsanitize=fuzzer-no-link,address,undefined (static libkd, everything else
# off); the harness is linked with -fsanitize=fuzzer,address,undefined.
# Build directory: $KD_FUZZ_BUILD (default build-fuzz).  New corpus entries go
# to $KD_FUZZ_BUILD/corpus (the repository's seed corpus is only read), crash
# inputs to $KD_FUZZ_BUILD/artifacts/.  Exit status is non-zero on a finding.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${KD_FUZZ_BUILD:-build-fuzz}
CC=${KD_FUZZ_CC:-clang}
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g"

build() {
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER="$CC" \
    -DKD_BUILD_TESTS=OFF -DKD_BUILD_EXAMPLES=OFF -DKD_BUILD_BENCH=OFF -DKD_WERROR=OFF \
    -DCMAKE_C_FLAGS="$SAN -fsanitize=fuzzer-no-link" >/dev/null
  cmake --build "$BUILD" --target kd_static -j "$(nproc)" >/dev/null
  local blas
  blas=$(sed -n 's/^KD_OPENBLAS_LIBRARY:FILEPATH=//p' "$BUILD/CMakeCache.txt")
  "$CC" -std=c11 -D_DEFAULT_SOURCE -Wall -Wextra -O1 $SAN -fsanitize=fuzzer -fopenmp \
    -Iinclude -I"$BUILD/include" fuzz/fuzz_api.c "$BUILD/src/libkd.a" "$blas" -lm -o "$BUILD/fuzz_api"
  echo "$BUILD/fuzz_api"
}

cmd=${1:-run}
case "$cmd" in
  build)
    build ;;
  run)
    secs=${2:-60}; jobs=${3:-1}
    build >/dev/null
    mkdir -p "$BUILD/corpus" "$BUILD/artifacts"
    echo "fuzz: $jobs job(s) for ${secs}s ($BUILD/fuzz_api)"
    # every past finding is replayed first: a regression fails before any fuzzing
    "$BUILD/fuzz_api" fuzz/crashes/* >/dev/null 2>&1 || { echo "fuzz: a past finding fails again"; \
      "$BUILD/fuzz_api" fuzz/crashes/*; exit 1; }
    if [ "$jobs" -gt 1 ]; then
      # -fork keeps going after a finding? no: stop at the first one (default).
      "$BUILD/fuzz_api" -fork="$jobs" -max_total_time="$secs" -max_len=4096 -timeout=60 \
        -rss_limit_mb=3072 -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/" \
        "$BUILD/corpus" fuzz/corpus
    else
      "$BUILD/fuzz_api" -max_total_time="$secs" -max_len=4096 -timeout=60 \
        -rss_limit_mb=3072 -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/" \
        "$BUILD/corpus" fuzz/corpus
    fi ;;
  repro)
    shift
    build >/dev/null
    "$BUILD/fuzz_api" -runs=1 "$@" ;;
  *)
    echo "usage: $0 build | run SECONDS [JOBS] | repro FILE..." >&2; exit 2 ;;
esac
