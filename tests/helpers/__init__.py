"""Helpers shared by test modules (no test module imports another test module): synthetic
event logs, dashboard screen access, tmux terminals, real-run and pruning helpers.
``tests/`` is on ``sys.path`` through ``tests/conftest.py``, so tests import
``from helpers import ...``."""
