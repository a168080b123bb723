# PyTorch parity of the self-training losses (tests/python/test_tllib_parity.py):
# libkd through ctypes against independent PyTorch re-implementations of the
# tllib.self_training definitions, autograd for the gradients.  Skipped (exit
# 77) when /usr/bin/python3 lacks torch or numpy; nosan as python.cmake.
if(EXISTS /usr/bin/python3)
  add_test(NAME python_tllib_parity
           COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/python/test_tllib_parity.py)
  set_tests_properties(python_tllib_parity PROPERTIES
    ENVIRONMENT "KDLIB_LIBRARY=$<TARGET_FILE:kd>;OMP_NUM_THREADS=1"
    SKIP_RETURN_CODE 77
    LABELS nosan
    TIMEOUT 600)
endif()
