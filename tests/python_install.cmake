# The Python package installed by CMake (component "python", KD_INSTALL_PYTHON)
# finds the installed libkd without KDLIB_LIBRARY, in a fresh virtual
# environment (bindings/python/tests/check_install.sh).  nosan: see python.cmake.
if(EXISTS /usr/bin/python3)
  add_test(NAME python_install
           COMMAND bash ${PROJECT_SOURCE_DIR}/bindings/python/tests/check_install.sh
                   ${PROJECT_BINARY_DIR} ${KD_PYTHON_INSTALL_DIR})
  set_tests_properties(python_install PROPERTIES
    ENVIRONMENT "OMP_NUM_THREADS=1"
    LABELS nosan
    TIMEOUT 300)
endif()
