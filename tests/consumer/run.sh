#!/usr/bin/env bash
# Install the build tree into a temporary prefix, then build and run a consumer
# program against it with find_package(kdlib) (shared and static) and with
# pkg-config (shared, and static through Libs.private).
set -euo pipefail
build=$1; src=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
cmake -S "$src" -B "$tmp/cmake" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/cmake" >/dev/null
"$tmp/cmake/consumer_shared"
"$tmp/cmake/consumer_static"
pc=$(dirname "$(find "$tmp/prefix" -name kdlib.pc)")
export PKG_CONFIG_PATH=$pc
libdir=$(pkg-config --variable=libdir kdlib)
cc "$src/main.c" -o "$tmp/pc_shared" $(pkg-config --cflags --libs kdlib) -Wl,-rpath,"$libdir"
"$tmp/pc_shared"
cc "$src/main.c" -o "$tmp/pc_static" -static-libgcc $(pkg-config --cflags kdlib) \
  "$libdir/libkd.a" $(pkg-config --libs --static kdlib | sed 's/-lkd//') -fopenmp
"$tmp/pc_static"
# Only the public kd_ API is exported from the shared library.
bad=$(nm -D --defined-only "$libdir/libkd.so" | awk '$2 ~ /[TDBR]/ {print $3}' | grep -v '^kd_' || true)
if [ -n "$bad" ]; then echo "unexpected exported symbols: $bad"; exit 1; fi
readelf -d "$libdir/libkd.so" | grep -q 'SONAME.*libkd.so.1' || { echo "soname is not libkd.so.1"; exit 1; }
echo "consumer builds: ok"
