"""The dashboard against a live (or dead) engine: engine lost within 2 s, a reader that
fails, a replay that derives "engine lost", and what it redraws while nothing changes."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from engine.pidfile import write_pidfile
from helpers.dash import LOST, RSST, screen_text, settle, wait_for
from tuiprune.dashboard.app import WIDGETS, DashboardApp

LOST_WITHIN_S = 2.0  # the README's promise


@pytest.fixture
def stand_in_engine():
    """A process standing in for a live engine."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


def running_copy(run_copy, src=RSST):
    """A copy of a fixture run whose log has no run_ended yet."""
    run = run_copy(src)
    lines = (run / "events.jsonl").read_text().splitlines(keepends=True)
    (run / "events.jsonl").write_text("".join(lines[:-1]))
    return run


async def test_engine_lost_shows_within_two_seconds_of_a_kill(run_copy, stand_in_engine):
    run = running_copy(run_copy)
    write_pidfile(run, stand_in_engine.pid)
    (run / "engine.log").write_text("training...\nKilled\n")
    app = DashboardApp(run / "events.jsonl", run, mode="watch")
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        await wait_for(pilot, lambda: app.clock_ticks >= 1, what="a first look")
        assert "RUNNING" in screen_text(app)
        stand_in_engine.kill()
        await wait_for(pilot, lambda: "ENGINE LOST" in screen_text(app),
                       timeout=LOST_WITHIN_S, what=f"ENGINE LOST within {LOST_WITHIN_S} s")


async def test_an_exception_in_the_tailer_thread_shows_in_the_dashboard(run_copy,
                                                                        stand_in_engine):
    run = running_copy(run_copy)
    write_pidfile(run, stand_in_engine.pid)
    app = DashboardApp(run / "events.jsonl", run, mode="watch")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        (run / "events.jsonl").unlink()
        (run / "events.jsonl").mkdir()  # reopening the log now fails in the tailer thread
        await wait_for(pilot, lambda: "the log reader stopped: IsADirectoryError"
                       in screen_text(app), what="the reader's error on screen")
        text = screen_text(app)
        assert "Log · 0 warnings · 1 error" in text and "RUNNING" in text
        assert not app.source.is_alive()


async def test_a_replay_of_a_killed_run_derives_engine_lost_too(run_copy):
    run = run_copy(LOST)
    app = DashboardApp(run / "events.jsonl", run, mode="replay", speed=0)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        pid = json.loads((run / "engine.pid").read_text())["pid"]
        await wait_for(pilot, lambda: "ENGINE LOST" in screen_text(app), what="engine lost")
        # why, in the log pane (its end shows the end of engine.log, longer than the pane)
        assert app.ctx.view.log[-1].text.startswith(f"engine lost: process {pid} is gone")


def redraws(app) -> dict:
    """How often each widget asked to be redrawn (the sparsity pane: its rows)."""
    return {w.id: w.redraws for w in app.query(WIDGETS + ", #sparsity-rows")
            if hasattr(w, "redraws")}


async def test_a_finished_run_redraws_nothing_while_nothing_changes():
    app = DashboardApp(RSST / "events.jsonl", RSST, mode="replay", speed=0)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await wait_for(pilot, lambda: app.clock_ticks >= 1, what="a clock tick")
        before, ticks = redraws(app), app.clock_ticks
        await wait_for(pilot, lambda: app.clock_ticks >= ticks + 2, what="two clock ticks")
        assert redraws(app) == before


async def test_a_quiet_live_run_redraws_only_its_clock(run_copy, stand_in_engine):
    run = running_copy(run_copy)
    write_pidfile(run, stand_in_engine.pid)
    app = DashboardApp(run / "events.jsonl", run, mode="watch")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await wait_for(pilot, lambda: app.clock_ticks >= 1, what="a clock tick")
        before, ticks, t0 = redraws(app), app.clock_ticks, time.monotonic()
        await wait_for(pilot, lambda: app.clock_ticks >= ticks + 3, what="three clock ticks")
        after = redraws(app)
        seconds = time.monotonic() - t0
        assert {k: after[k] - before[k] for k in after if k != "header"} == \
            {k: 0 for k in after if k != "header"}
        header_redraws = after["header"] - before["header"]
        assert 1 <= header_redraws <= int(seconds) + 1


async def test_one_new_batch_redraws_the_progress_line_and_not_the_charts(run_copy,
                                                                          stand_in_engine):
    run = running_copy(run_copy)
    write_pidfile(run, stand_in_engine.pid)
    batch = next(e for e in map(json.loads, (RSST / "events.jsonl").read_text().splitlines())
                 if e["event"] == "batch" and e["state"] == 2)
    app = DashboardApp(run / "events.jsonl", run, mode="watch")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        before, applied = redraws(app), app.chunks_applied
        with open(run / "events.jsonl", "a") as f:
            f.write(json.dumps({**batch, "seq": 10_000, "batch": batch["batch"] + 1}) + "\n")
        app.source.poke()
        await wait_for(pilot, lambda: app.chunks_applied > applied, what="the new batch")
        await wait_for(pilot, lambda: redraws(app)["progress"] > before["progress"],
                       what="the progress line redrawn")
        changed = {k for k, v in redraws(app).items() if v != before[k]}
        assert changed <= {"progress", "header"}  # the header's ETA may move with it


async def test_a_reducer_bug_is_shown_and_the_dashboard_goes_on(monkeypatch):
    from tuiprune.dashboard.reducer import Reducer

    def broken(self, ev):
        raise ZeroDivisionError("a bug in the reducer")

    monkeypatch.setattr(Reducer, "_hard_cut", broken)
    app = DashboardApp(RSST / "events.jsonl", RSST, mode="replay", speed=0)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await wait_for(pilot, lambda: "could not show some events (ZeroDivisionError: a bug in "
                       "the reducer)" in screen_text(app), what="the bug, reported")
        assert app.return_code is None  # still running
