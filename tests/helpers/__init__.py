"""Helpers shared by test modules (no test module imports another): synthetic event logs,
dashboard screen access, tmux terminals and real-run helpers. ``tests/`` is on ``sys.path``
through ``tests/conftest.py``, so tests import ``from helpers import ...``."""
