"""``tuiprune watch CONFIG`` starts the engine through tuiprune.launch: an engine that ends
while the dashboard (its parent) is still open is reaped, not left a zombie (issue 14
item 10)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine.logread import iter_events
from engine.pidfile import engine_alive, read_pidfile
from helpers.dash import ROOT
from helpers.runs import overrides
from tuiprune.launch import start_detached

pytestmark = pytest.mark.slow


def proc_state(pid: int):
    """The process's state letter in /proc (``Z``: a zombie), or None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def test_an_engine_that_ends_under_its_dashboard_is_reaped(tmp_path):
    run_dir = start_detached(ROOT / "configs" / "demo.toml", overrides(
        f"run.output_dir='{tmp_path}'", "run.name='reaped'", "prune.states=1",
        "train.epochs=1", "data.train_size=100", "data.test_size=20"))
    pid = read_pidfile(run_dir)["pid"]
    deadline = time.monotonic() + 180
    while proc_state(pid) not in (None, "Z"):  # the engine runs
        assert time.monotonic() < deadline, "the engine did not finish"
        time.sleep(0.2)
    ended = [e for e in iter_events(run_dir / "events.jsonl") if e["event"] == "run_ended"]
    assert [e["status"] for e in ended] == ["completed"]
    deadline = time.monotonic() + 10
    while proc_state(pid) is not None:  # this process, its parent, reaps it
        assert time.monotonic() < deadline, f"the engine is left as {proc_state(pid)!r}"
        time.sleep(0.05)
    assert engine_alive(run_dir) is not True
