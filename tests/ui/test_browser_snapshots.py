"""SVG snapshots of the run browser and the compare screen on the fixture runs
(pytest-textual-snapshot), at 80x24 and 120x40 and in ASCII. Paths are relative (the test
works in its own directory) so the pictures do not depend on where it runs. After an intended
change of the look: ``pytest tests/ui/test_browser_snapshots.py --snapshot-update``."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.browse import compared, listed
from helpers.sweeps import copy_fixtures, fixture_sweep
from tuiprune.dashboard.browser.app import BrowserApp

SIZES = [(80, 24), (120, 40)]


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("size", SIZES)
def test_browser_of_an_output_directory(snap_compare, here, size):
    copy_fixtures(here / "runs")
    fixture_sweep(here / "runs")

    async def before(pilot):
        await listed(pilot, rows=9)
        await pilot.press("down", "space", "down", "space")

    assert snap_compare(BrowserApp(Path("runs")), terminal_size=size, run_before=before)


def test_browser_of_a_sweep_ascii(snap_compare, here):
    sweep = fixture_sweep(Path("."))

    async def before(pilot):
        await listed(pilot, rows=4)
        await pilot.press("s", "s", "s")  # by best val

    assert snap_compare(BrowserApp(sweep, ascii_only=True), terminal_size=(80, 24),
                        run_before=before)


@pytest.mark.parametrize("size", SIZES)
def test_compare_a_sweep(snap_compare, here, size):
    sweep = fixture_sweep(Path("."))

    async def before(pilot):
        await compared(pilot)

    assert snap_compare(BrowserApp(sweep, compare=True), terminal_size=size,
                        run_before=before)


def test_compare_a_sweep_ascii_final_val_state_1(snap_compare, here):
    sweep = fixture_sweep(Path("."))

    async def before(pilot):
        await compared(pilot)
        await pilot.press("v", "left")

    assert snap_compare(BrowserApp(sweep, compare=True, ascii_only=True),
                        terminal_size=(80, 24), run_before=before)
