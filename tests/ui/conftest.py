"""Dashboard tests: async tests without a plugin, copies of fixture runs, a tmux terminal."""

from __future__ import annotations

import asyncio
import inspect
import shutil
from pathlib import Path

import pytest

from helpers.dash import pin_time_zone
from helpers.tmux import Tmux

pin_time_zone()


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


@pytest.fixture
def term(tmp_path):
    """A real terminal (tmux) of its own, closed after the test."""
    t = Tmux(tmp_path)
    yield t
    t.close()
