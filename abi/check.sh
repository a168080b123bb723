#!/usr/bin/env bash
# Compare the ABI of the built libkd.so with the recorded baseline abi/libkd.abi
# (abidw/abidiff from Debian's abigail-tools; procedure in abi/README.md).
#
#   bash abi/check.sh             build libkd.so with debug info, compare
#   bash abi/check.sh --update    build, then rewrite abi/libkd.abi
#   KD_ABI_LIB=path/libkd.so.1 bash abi/check.sh    compare a given library
#
# Fails (exit 1) on an incompatible change: a removed or changed function or
# variable, or anything abidiff itself calls incompatible (exit bit 8), or a
# different soname.  Added symbols are reported and accepted.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=abi/libkd.abi
BUILD=${KD_BUILD_DIR:-build}-abi
LIB=${KD_ABI_LIB:-}
if [ -z "$LIB" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Debug -DKD_BUILD_TESTS=OFF \
    -DKD_BUILD_EXAMPLES=OFF -DKD_BUILD_BENCH=OFF >/dev/null
  cmake --build "$BUILD" --target kd -j "$(nproc)" >/dev/null
  LIB=$(ls "$BUILD"/src/libkd.so.[0-9]* | sort | tail -n1)
fi
# Only the public headers' types are part of the ABI (handles are opaque).
HDR=(--headers-dir include/kdlib)

if [ "${1:-}" = "--update" ]; then
  abidw "${HDR[@]}" --no-corpus-path --out-file "$BASE" "$LIB"
  echo "abi: baseline $BASE regenerated from $LIB ($(grep -c '<elf-symbol ' "$BASE") symbols)"
  exit 0
fi

set +e
report=$(abidiff --headers-dir1 include/kdlib --headers-dir2 include/kdlib \
  --no-show-locs "$BASE" "$LIB" 2>&1)
rc=$?
set -e
echo "$report"
if [ $((rc & 3)) -ne 0 ]; then
  echo "abi: abidiff could not compare (exit $rc)" >&2
  exit 1
fi
removed=$(echo "$report" | sed -n 's/.*changes summary: \([0-9]*\) Removed.*/\1/p' | awk '{s+=$1} END {print s+0}')
changed=$(echo "$report" | sed -n 's/.*changes summary: [0-9]* Removed, \([0-9]*\) Changed.*/\1/p' | awk '{s+=$1} END {print s+0}')
added=$(echo "$report" | sed -n 's/.* \([0-9]*\) Added .*/\1/p' | awk '{s+=$1} END {print s+0}')
sym_removed=$(echo "$report" | sed -n 's/.*symbols not referenced by debug info: \([0-9]*\) Removed.*/\1/p' | awk '{s+=$1} END {print s+0}')
soname=$(echo "$report" | grep -c "SONAME changed" || true)
if [ $((rc & 8)) -ne 0 ] || [ "${removed:-0}" -gt 0 ] || [ "${changed:-0}" -gt 0 ] ||
   [ "${sym_removed:-0}" -gt 0 ] || [ "$soname" -gt 0 ]; then
  echo "abi: INCOMPATIBLE change against $BASE (removed ${removed:-0}, changed ${changed:-0}," \
       "soname changes $soname, abidiff exit $rc); see abi/README.md" >&2
  exit 1
fi
if [ "${added:-0}" -gt 0 ]; then
  echo "abi: compatible; ${added} addition(s) (record them with: bash abi/check.sh --update)"
else
  echo "abi: identical to $BASE"
fi
