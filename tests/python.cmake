# PyTorch parity of the distillation-family losses (tests/python/test_torch_parity.py):
# compares libkd, loaded through ctypes, with F.cross_entropy / F.kl_div /
# F.mse_loss and their autograd gradients.  Skipped (exit 77) when
# /usr/bin/python3 lacks torch or numpy.  Labelled nosan: a sanitized libkd
# cannot be loaded into an uninstrumented Python, so the sanitizer run
# (ctest -LE nosan) leaves it out.
if(EXISTS /usr/bin/python3)
  add_test(NAME python_torch_parity
           COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/python/test_torch_parity.py)
  set_tests_properties(python_torch_parity PROPERTIES
    ENVIRONMENT "KDLIB_LIBRARY=$<TARGET_FILE:kd>;OMP_NUM_THREADS=1"
    SKIP_RETURN_CODE 77
    LABELS nosan
    TIMEOUT 600)
endif()
