# Tests of the kdlib Python binding (unittest; run through run_tests.py or
# python3 -m unittest discover -s bindings/python/tests -t bindings/python).
