# Data-parallel kdlib on torch.distributed (gloo, two processes on this
# machine): class balance, MCC and the threshold states equal one process
# (bindings/python/tests/data_parallel.py).  Skipped (exit 77, with the
# reason) when /usr/bin/python3 lacks NumPy, PyTorch, torch.distributed or
# gloo; nosan as python.cmake.  The ranks time out after 60 s, the parent
# kills them after 120 s.
if(EXISTS /usr/bin/python3)
  add_test(NAME python_data_parallel
           COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/bindings/python/tests/data_parallel.py)
  set_tests_properties(python_data_parallel PROPERTIES
    ENVIRONMENT "KDLIB_LIBRARY=$<TARGET_FILE:kd>;PYTHONPATH=${PROJECT_SOURCE_DIR}/bindings/python;OMP_NUM_THREADS=1"
    SKIP_RETURN_CODE 77
    LABELS nosan
    TIMEOUT 300)
endif()
