# Installing the Python package, both tested in a fresh virtual environment
# and imported from / without KDLIB_LIBRARY (nosan: see python.cmake):
#   python_install      cmake --install (component "python", KD_INSTALL_PYTHON):
#                       the package finds the installed libkd (check_install.sh);
#   python_pip_install  pip install bindings/python from this build tree
#                       (setup.py bundles src/libkd.so.N; offline, no build
#                       isolation; check_pip.sh).
function(kd_python_install_test name script)
  add_test(NAME ${name}
           COMMAND bash ${PROJECT_SOURCE_DIR}/bindings/python/tests/${script} ${ARGN})
  set_tests_properties(${name} PROPERTIES ENVIRONMENT "OMP_NUM_THREADS=1" LABELS nosan
                       TIMEOUT 300)
endfunction()
if(EXISTS /usr/bin/python3)
  kd_python_install_test(python_install check_install.sh
                         ${PROJECT_BINARY_DIR} ${KD_PYTHON_INSTALL_DIR})
  kd_python_install_test(python_pip_install check_pip.sh ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
endif()
