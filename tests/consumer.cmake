# Install the build tree and build a consumer out of tree (find_package and pkg-config).
add_test(NAME consumer_builds
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/consumer/run.sh ${PROJECT_BINARY_DIR})
set_tests_properties(consumer_builds PROPERTIES LABELS nosan TIMEOUT 300)
