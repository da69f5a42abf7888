"""SVG snapshots of the main screen (pytest-textual-snapshot). After an intended change of the
look, or of the fixture runs: ``pytest tests/ui/test_snapshots.py --snapshot-update``."""

from __future__ import annotations

import pytest

from helpers.dash import FAILED, REFILL, RSST, settle
from tuiprune.dashboard.app import DashboardApp


def replay(run, ascii_only=False):
    return DashboardApp(run / "events.jsonl", run, mode="replay", speed=0, ascii_only=ascii_only)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_rsst_final_screen(snap_compare, size):
    assert snap_compare(replay(RSST), terminal_size=size, run_before=settle)


def test_refill_state_0_ascii(snap_compare):
    async def before(pilot):
        await settle(pilot)
        await pilot.press("left", "left")

    assert snap_compare(replay(REFILL, ascii_only=True), terminal_size=(80, 24),
                        run_before=before)


def test_failed_run_with_its_log(snap_compare):
    assert snap_compare(replay(FAILED), terminal_size=(120, 40), run_before=settle)
