"""The package version for setuptools (pyproject.toml: dynamic version).

Read from project(VERSION) in the top-level CMakeLists.txt, the one source of
the version; at run time kdlib.__version__ is the loaded library's
kd_version_string().
"""
import os
import re

_CMAKELISTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                           "CMakeLists.txt")


def _read():
    with open(_CMAKELISTS, encoding="utf-8") as f:
        m = re.search(r"project\(\s*kdlib\s+VERSION\s+(\d+\.\d+\.\d+)", f.read())
    if m is None:
        raise RuntimeError("no project(kdlib VERSION x.y.z) in " + _CMAKELISTS)
    return m.group(1)


version = _read()
