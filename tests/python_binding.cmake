# Tests of the Python binding (bindings/python/tests, unittest) against the
# freshly built libkd.  Skipped (exit 77) when /usr/bin/python3 lacks NumPy or
# PyTorch; nosan because a sanitized libkd cannot be loaded into an
# uninstrumented Python (see python.cmake).
if(EXISTS /usr/bin/python3)
  add_test(NAME python_binding
           COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/bindings/python/tests/run_tests.py)
  set_tests_properties(python_binding PROPERTIES
    ENVIRONMENT "KDLIB_LIBRARY=$<TARGET_FILE:kd>;PYTHONPATH=${PROJECT_SOURCE_DIR}/bindings/python;OMP_NUM_THREADS=1"
    SKIP_RETURN_CODE 77
    LABELS nosan
    TIMEOUT 600)
endif()
