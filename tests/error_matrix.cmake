# test_error_matrix compares docs/errors.md with its table: tell it where the
# sources are.
if(TARGET test_error_matrix)
  target_compile_definitions(test_error_matrix PRIVATE KD_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
endif()
