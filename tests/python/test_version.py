"""Every place that states kdlib's version agrees with project(VERSION) in
CMakeLists.txt: the generated kdlib/version.h, the loaded library, the Python
package (kdlib.__version__ and the setuptools version in kdlib/_version.py),
and no literal version left in pyproject.toml or core.h.

usage: test_version.py PROJECT_VERSION BUILD_DIR SOURCE_DIR
"""
import os
import re
import sys

want, build, src = sys.argv[1:4]
fails = []


def check(what, got):
    if got != want:
        fails.append("%s: %r, CMake PROJECT_VERSION %r" % (what, got, want))


with open(os.path.join(build, "include", "kdlib", "version.h")) as f:
    h = f.read()
macros = {k: re.search(r"#define KD_VERSION_%s (\d+)" % k, h).group(1)
          for k in ("MAJOR", "MINOR", "PATCH")}
check("version.h KD_VERSION_MAJOR.MINOR.PATCH", "%(MAJOR)s.%(MINOR)s.%(PATCH)s" % macros)
check("version.h KD_VERSION_STRING", re.search(r'#define KD_VERSION_STRING "([^"]*)"', h).group(1))

sys.path.insert(0, os.path.join(src, "bindings", "python"))
import kdlib  # noqa: E402
from kdlib import _version  # noqa: E402

check("kd_version_string()", kdlib.version())
major, minor, patch = (int(x) for x in want.split("."))
if kdlib.library_version != major * 10000 + minor * 100 + patch:
    fails.append("kd_version_number() %d, CMake %s" % (kdlib.library_version, want))
check("kdlib.__version__", kdlib.__version__)
check("kdlib._version.version (pyproject.toml)", _version.version)

with open(os.path.join(src, "CMakeLists.txt")) as f:
    soversion = int(re.search(r"set\(KD_SOVERSION (\d+)\)", f.read()).group(1))
from kdlib import _lib  # noqa: E402
if _lib.BINDING_SOVERSION != soversion:
    fails.append("kdlib._lib.BINDING_SOVERSION %d, CMake KD_SOVERSION %d"
                 % (_lib.BINDING_SOVERSION, soversion))

with open(os.path.join(src, "bindings", "python", "pyproject.toml")) as f:
    pyproject = f.read()
project = pyproject.split("[project]", 1)[1].split("\n[", 1)[0]
if re.search(r"^version\s*=", project, re.M) or 'dynamic = ["version"]' not in project:
    fails.append("pyproject.toml: the version must be dynamic (kdlib._version)")
with open(os.path.join(src, "include", "kdlib", "core.h")) as f:
    if re.search(r"#define KD_VERSION_(MAJOR|MINOR|PATCH)\b", f.read()):
        fails.append("core.h defines a version macro; they belong to version.h.in")

for m in fails:
    print("FAIL", m)
print("version %s: %s" % (want, "mismatch" if fails else "all places agree"))
sys.exit(1 if fails else 0)
