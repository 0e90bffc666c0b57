"""The torch adapter's tests need torch (``pip install ".[torch]"``); without it they are not
collected (``pip install ".[test]"`` alone runs the NumPy and array-API tests)."""

import importlib.util

if importlib.util.find_spec("torch") is None:
    collect_ignore_glob = ["test_*.py"]
