#!/bin/bash
# `pip install bindings/python` from a build tree gives a package that loads
# the build's libkd without KDLIB_LIBRARY (ctest python_pip_install): a copy
# of the package sources (and CMakeLists.txt, the version's source) is
# installed offline into a fresh virtual environment (system site packages
# for NumPy, setuptools and pip), then imported from /.
# usage: check_pip.sh SOURCE_DIR BUILD_DIR
set -eu
src=$1
build=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/src/bindings"
cp "$src/CMakeLists.txt" "$tmp/src/"
cp -r "$src/bindings/python" "$tmp/src/bindings/python"
rm -rf "$tmp/src/bindings/python/build" "$tmp/src/bindings/python"/*.egg-info
/usr/bin/python3 -m venv --without-pip --system-site-packages "$tmp/venv"
KDLIB_BUILD_DIR="$build" "$tmp/venv/bin/python" -m pip install --no-build-isolation --no-index \
    --no-deps --quiet --disable-pip-version-check "$tmp/src/bindings/python"
cd /
env -u KDLIB_LIBRARY "$tmp/venv/bin/python" - "$tmp/venv" <<'PY'
import os, sys
import numpy as np
import kdlib
venv = os.path.realpath(sys.argv[1])
assert os.path.realpath(kdlib.__file__).startswith(venv + os.sep), kdlib.__file__
path = os.path.realpath(kdlib.library_path)
assert path.startswith(venv + os.sep), "loaded %s, not the bundled library" % path
assert kdlib.kl_distill(np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32)).loss == 0.0
print("kdlib %s from %s, library %s" % (kdlib.__version__, kdlib.__file__, path))
PY
