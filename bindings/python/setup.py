"""setuptools hook (the metadata is in pyproject.toml): a wheel built from a
source checkout carries the libkd of a build tree, so `pip install
bindings/python` gives a package that loads without KDLIB_LIBRARY.

The library is $KDLIB_BUILD_DIR/src/libkd.so.N (N = KD_SOVERSION of
CMakeLists.txt) if that variable is set, else the newest build*/src/libkd.so.N
of the checkout; without one the wheel has
no library and kdlib looks for an installed libkd at import (README)."""
import glob
import os
import re
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def soname():
    with open(os.path.join(HERE, "..", "..", "CMakeLists.txt"), encoding="utf-8") as f:
        return "libkd.so.%s" % re.search(r"set\(KD_SOVERSION (\d+)\)", f.read()).group(1)


def built_library():
    d = os.environ.get("KDLIB_BUILD_DIR")
    pattern = os.path.join(d, "src") if d else os.path.join(HERE, "..", "..", "build*", "src")
    found = glob.glob(os.path.join(pattern, soname()))
    if d and not found:
        raise SystemExit("KDLIB_BUILD_DIR=%s has no src/%s (build it first)" % (d, soname()))
    found.sort(key=os.path.getmtime, reverse=True)
    return found[0] if found else None


class BuildPy(build_py):
    def run(self):
        super().run()
        lib = built_library()
        if lib:
            dst = os.path.join(self.build_lib, "kdlib", soname())
            shutil.copyfile(os.path.realpath(lib), dst)
            print("kdlib: bundling %s" % os.path.realpath(lib))


cmdclass = {"build_py": BuildPy}
try:                      # a wheel with a shared library is platform specific
    from wheel.bdist_wheel import bdist_wheel

    class BdistWheel(bdist_wheel):
        def finalize_options(self):
            super().finalize_options()
            self.root_is_pure = False

        def get_tag(self):
            return ("py3", "none") + tuple(super().get_tag()[2:])

    cmdclass["bdist_wheel"] = BdistWheel
except ImportError:
    pass

setup(cmdclass=cmdclass)
