# test_no_alloc replaces malloc and friends to count the library's calls:
# not under a sanitizer (which owns the allocator; the program then exits 77).
set_tests_properties(test_no_alloc PROPERTIES LABELS nosan SKIP_RETURN_CODE 77)
