# Lets the test modules import each other (test_crash uses test_readers helpers):
# pytest puts this folder on sys.path because it holds a conftest.py.
