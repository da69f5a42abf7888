"""The run browser in a real terminal (tmux): open the list, mark two runs, compare them, come
back, open a run's dashboard, quit."""

from __future__ import annotations

import pytest

from helpers.dash import events_of
from helpers.sweeps import copy_fixtures, fixture_sweep
from helpers.tmux import TUIPRUNE

pytestmark = pytest.mark.slow


def test_browse_mark_compare_come_back_open_quit(term, tmp_path):
    out = copy_fixtures(tmp_path / "runs")
    order = sorted((p.name for p in out.iterdir()), key=lambda n: events_of(out / n)[0]["time"])
    term.start(f"{TUIPRUNE} watch {out}", size=(100, 30))
    term.wait_screen(lambda s: "5 runs: 3 completed, 1 failed, 1 lost" in s)
    term.keys("Space")
    term.keys("Space")
    term.wait_screen(lambda s: "marked AB (c compares)" in s)
    term.keys("c")
    text = term.wait_screen(lambda s: "compare 2 runs" in s and "State 2 per layer" in s)
    assert f"A ● {order[0]}" in text and f"B ● {order[1]}" in text
    term.keys("Escape")
    term.wait_screen(lambda s: "runs in" in s and "marked AB" in s)
    term.keys("Enter")  # the cursor went down past the two marked runs
    text = term.wait_screen(lambda s: f"tuiprune  {order[2]}" in s and "Esc back" in s)
    term.keys("Escape")
    term.wait_screen(lambda s: "runs in" in s)
    term.keys("Enter")
    term.wait_screen(lambda s: f"tuiprune  {order[2]}" in s)
    term.keys("q")
    assert term.wait_exit() == 0


def test_watch_sweep_compare_opens_its_members_side_by_side(term, tmp_path):
    sweep = fixture_sweep(tmp_path)
    term.start(f"{TUIPRUNE} watch {sweep} --compare --ascii", size=(80, 24))
    text = term.wait_screen(lambda s: "compare 4 runs" in s and "State 2 per layer" in s)
    assert all(ord(ch) < 128 for ch in text), text
    term.keys("Escape")
    term.wait_screen(lambda s: "4 runs: 3 completed, 1 pending" in s)
    term.keys("q")
    assert term.wait_exit() == 0
