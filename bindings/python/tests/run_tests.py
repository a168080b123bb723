#!/usr/bin/env python3
"""CTest entry of the Python binding tests: exit 77 (skip) when NumPy or
PyTorch is missing, else run every tests/test_*.py with unittest."""
import importlib.util
import os
import sys
import unittest

missing = [m for m in ("numpy", "torch") if importlib.util.find_spec(m) is None]
if missing:
    print("skipping the kdlib Python binding tests: %s not installed" % ", ".join(missing))
    sys.exit(77)

here = os.path.dirname(os.path.abspath(__file__))
top = os.path.dirname(here)
sys.path.insert(0, top)
suite = unittest.defaultTestLoader.discover(here, pattern="test_*.py", top_level_dir=top)
result = unittest.TextTestRunner(verbosity=2).run(suite)
sys.exit(0 if result.wasSuccessful() else 1)
