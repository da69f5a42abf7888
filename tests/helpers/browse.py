"""Helpers for the run browser's and compare screen's tests: waiting for them to read, and
what the logs say, computed from the raw JSON lines (independent of the readers under test)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, List, Optional

from helpers.dash import events_of


async def listed(pilot, timeout: float = 10.0, rows: Optional[int] = None) -> None:
    """Wait until the browser has listed its directory (and shows ``rows`` rows)."""
    app = pilot.app
    browser = app.browser
    deadline = time.monotonic() + timeout
    while not (browser.state.listed and (rows is None or len(browser.table.paths) == rows)):
        assert time.monotonic() < deadline, "the browser did not list its directory in time"
        await pilot.pause(0.05)
    await pilot.pause()
    await pilot.pause()


async def compared(pilot, timeout: float = 10.0) -> None:
    """Wait until the compare screen is on top, has read every log that exists, and drew
    it."""
    from tuiprune.dashboard.compare.screen import CompareScreen

    deadline = time.monotonic() + timeout
    while not isinstance(pilot.app.screen, CompareScreen):
        assert time.monotonic() < deadline, "no compare screen"
        await pilot.pause(0.05)
    screen = pilot.app.screen
    while not all(done or not (run.path / "events.jsonl").exists()
                  for done, run in zip(screen.caught_up, screen.ctx.runs)):
        assert time.monotonic() < deadline, "the compare screen did not read its logs in time"
        await pilot.pause(0.05)
    screen.redraw(force=True)
    await pilot.pause()
    await pilot.pause()


def pct(value: Optional[float]) -> str:
    return "--" if value is None else f"{value:.2f}%"


def expected_row(run_dir: Path) -> Dict[str, str]:
    """Status, state k/n, best val (of the last state with an epoch) and final sparsity of a
    finished fixture run, from its raw log. A log without run_ended counts as lost (the
    fixtures' engines are gone)."""
    evs = events_of(run_dir)
    of = {kind: [e for e in evs if e["event"] == kind] for kind in
          ("run_started", "run_ended", "state_started", "state_ended", "epoch_ended")}
    status = of["run_ended"][-1]["status"] if of["run_ended"] else "lost"
    last = max(e["state"] for e in of["epoch_ended"] + of["state_ended"])
    ended = [e for e in of["state_ended"] if e["state"] == last]
    best = ended[-1]["best_val_acc"] if ended else max(
        e["val_acc"] for e in of["epoch_ended"] if e["state"] == last)
    if of["run_ended"] and of["run_ended"][-1].get("sparsity") is not None:
        sparsity = of["run_ended"][-1]["sparsity"]
    else:
        sparsity = [e["sparsity"] for e in of["state_started"] + of["state_ended"]
                    if e.get("sparsity") is not None][-1]
    states = of["run_started"][0]["states"]
    done = len({e["state"] for e in of["state_ended"]})
    return {"status": status, "state": f"{done}/{states}", "best val": pct(best),
            "sparsity": pct(sparsity)}


def row_of(text: str, name: str) -> List[str]:
    """The words of the screen line of the run ``name`` (the first that names it)."""
    for line in text.splitlines():
        words = line.split()
        if name in words:
            return words
    raise AssertionError(f"no row for {name} on the screen:\n{text}")


def table_names(text: str, names) -> List[str]:
    """The run names in the order their rows are on the screen."""
    found = []
    for line in text.splitlines():
        for word in line.split():
            if word in names and word not in found:
                found.append(word)
    return found


def assert_only_ascii(screens: List[str]) -> None:
    for text in screens:
        bad = sorted({ch for ch in text if ord(ch) > 127})
        assert not bad, f"non-ASCII characters on screen: {bad}\n{text}"
