#!/bin/bash
# The installed Python package finds the installed libkd without KDLIB_LIBRARY
# (ctest python_install): install the build tree and the "python" component
# into a temporary prefix, make a fresh virtual environment (system site
# packages for NumPy), and import kdlib from outside the source tree.
# usage: check_install.sh BUILD_DIR PYTHON_INSTALL_DIR(relative to the prefix)
set -eu
build=$1
pydir=$2
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
cmake --install "$build" --prefix "$prefix" --component python >/dev/null
test -f "$prefix/$pydir/kdlib/_install_location.py"
/usr/bin/python3 -m venv --without-pip --system-site-packages "$prefix/venv"
cd /
env -u KDLIB_LIBRARY PYTHONPATH="$prefix/$pydir" "$prefix/venv/bin/python" - "$prefix" <<'PY'
import os, sys
import numpy as np
import kdlib
prefix = os.path.realpath(sys.argv[1])
path = os.path.realpath(kdlib.library_path)
assert path.startswith(prefix + os.sep), "loaded %s, not the library under %s" % (path, prefix)
assert os.path.realpath(kdlib.__file__).startswith(prefix + os.sep), kdlib.__file__
loss = kdlib.kl_distill(np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32)).loss
assert loss == 0.0, loss
print("kdlib %s from %s, library %s" % (kdlib.__version__, kdlib.__file__, path))
PY
