#!/usr/bin/env bash
# Run the examples' smoke tests (CTest tests named example_smoke_*) under
# Valgrind memcheck; any memcheck error or definite leak fails the run.
#   bash scripts/valgrind-smoke.sh BUILD_DIR
# The build should be a normal (non-sanitizer) one; the commands and their
# arguments are taken from CTest, so they stay those the examples register.
# scripts/valgrind.supp holds the suppressions (GNU OpenMP's thread pool and
# OpenBLAS's start-up allocations, which are not kdlib's and are freed at exit
# or kept on purpose); it documents each entry.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:?usage: $0 BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)  # the commands run in their own directories
SUPP=$PWD/scripts/valgrind.supp
# Appended to each smoke command (the examples take the last value of an
# option): fewer images keep memcheck's 20-50x slowdown within CI's budget
# while running the same code paths.  Set KD_VALGRIND_EXTRA_ARGS= for none.
EXTRA=${KD_VALGRIND_EXTRA_ARGS---limit-train 300 --limit-test 100}
LOGDIR=$BUILD/valgrind
mkdir -p "$LOGDIR"
ctest --test-dir "$BUILD" -R '^example_smoke_' --show-only=json-v1 > "$LOGDIR/tests.json"
mapfile -t TESTS < <(python3 - "$LOGDIR/tests.json" <<'PY'
import json, shlex, sys
for t in json.load(open(sys.argv[1]))["tests"]:
    wd = next((p["value"] for p in t.get("properties", []) if p["name"] == "WORKING_DIRECTORY"), ".")
    print(t["name"] + "\t" + wd + "\t" + shlex.join(t["command"]))
PY
)
if [ ${#TESTS[@]} -eq 0 ]; then
  echo "valgrind: no example_smoke_* test registered in $BUILD" >&2
  exit 1
fi
fail=0
for line in "${TESTS[@]}"; do
  IFS=$'\t' read -r name wd cmd <<<"$line"
  log="$LOGDIR/$name.log"
  start=$(date +%s)
  # OMP_WAIT_POLICY=passive: idle OpenMP threads sleep instead of spinning,
  # which under Valgrind's serialised threads would only burn time.
  if (cd "$wd" && eval "OMP_WAIT_POLICY=passive OPENBLAS_NUM_THREADS=1 valgrind --tool=memcheck \
        --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
        --show-leak-kinds=definite --track-origins=no --suppressions='$SUPP' \
        --log-file='$log' $cmd $EXTRA" >"$LOGDIR/$name.out" 2>&1); then
    echo "valgrind: $name clean ($(( $(date +%s) - start ))s, $(grep -o 'ERROR SUMMARY: [0-9]* errors' "$log"))"
  else
    echo "valgrind: $name FAILED (exit $?, see $log)" >&2
    grep -E "ERROR SUMMARY|definitely lost|Invalid|uninitialised" "$log" | head -n 20 >&2 || true
    fail=1
  fi
done
exit $fail
