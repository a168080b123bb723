# KD_LOSS_FAIRNESS against a PyTorch float64 re-statement of USB's FreeMatch
# entropy_loss (tests/python/test_usb_fairness.py), through kdlib.torch.
# Skipped (exit 77) when /usr/bin/python3 lacks torch or numpy; nosan as
# python.cmake.
if(EXISTS /usr/bin/python3)
  add_test(NAME python_usb_fairness
           COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/python/test_usb_fairness.py)
  set_tests_properties(python_usb_fairness PROPERTIES
    ENVIRONMENT "KDLIB_LIBRARY=$<TARGET_FILE:kd>;PYTHONPATH=${PROJECT_SOURCE_DIR}/bindings/python;OMP_NUM_THREADS=1"
    SKIP_RETURN_CODE 77
    LABELS nosan
    TIMEOUT 600)
endif()
