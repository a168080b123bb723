# One version: CMake's PROJECT_VERSION against version.h, the library and the
# Python package (tests/python/test_version.py).  nosan: see python.cmake.
if(EXISTS /usr/bin/python3)
  add_test(NAME python_version
           COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/python/test_version.py
                   ${PROJECT_VERSION} ${PROJECT_BINARY_DIR} ${PROJECT_SOURCE_DIR})
  set_tests_properties(python_version PROPERTIES
    ENVIRONMENT "KDLIB_LIBRARY=$<TARGET_FILE:kd>;OMP_NUM_THREADS=1"
    SKIP_RETURN_CODE 77
    LABELS nosan)
endif()
