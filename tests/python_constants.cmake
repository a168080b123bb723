# The Python binding's constants against the headers' enum values
# (tests/python/test_constants.py compiles a C program that prints them).
if(EXISTS /usr/bin/python3)
  add_test(NAME python_constants
           COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/python/test_constants.py
                   ${CMAKE_C_COMPILER} ${PROJECT_SOURCE_DIR}/include ${PROJECT_BINARY_DIR}/include)
  set_tests_properties(python_constants PROPERTIES
    ENVIRONMENT "KDLIB_LIBRARY=$<TARGET_FILE:kd>;OMP_NUM_THREADS=1"
    SKIP_RETURN_CODE 77
    LABELS nosan)
endif()
