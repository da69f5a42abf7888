"""Dashboard tests: async tests without a plugin, and copies of fixture runs."""

from __future__ import annotations

import asyncio
import inspect
import shutil
from pathlib import Path

import pytest

import dash_helpers  # noqa: F401  (pins the time zone, puts tests/ui on sys.path)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """Run ``async def`` tests on a fresh event loop (Textual's Pilot is async)."""
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
        asyncio.run(pyfuncitem.obj(**args))
        return True
    return None


@pytest.fixture
def run_copy(tmp_path):
    """``run_copy(src)``: a copy of a fixture run's small files in a temp dir."""

    def copy(src: Path, name: str = "") -> Path:
        dst = tmp_path / (name or src.name)
        dst.mkdir()
        for f in src.iterdir():
            if f.is_file():
                shutil.copy(f, dst / f.name)
        return dst

    return copy
