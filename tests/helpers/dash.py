"""Helpers for the dashboard tests: fixture runs, validated events, screen text, waiting."""

from __future__ import annotations

import io
import json
import os
import re
import time
from pathlib import Path
from typing import Iterable, List

from rich.console import Console

from engine.logread import iter_events
from engine.schema import validate

ROOT = Path(__file__).resolve().parents[2]

# Run directories written by the real engine (tests/fixtures/make_fixtures.py).
FIXTURE_RUNS = ROOT / "tests" / "fixtures" / "runs"
REFILL, RSST, FAILED, LOST = (FIXTURE_RUNS / name for name in
                              ("refill_global", "rsst_global", "failed_nan", "lost_killed"))

# What a terminal would act on (C0 controls but \t and \n, DEL, C1 controls), or that cannot
# be written to it (lone surrogates), or that reorders what a reader sees (bidi overrides).
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")


def pin_time_zone() -> None:
    """Log-pane timestamps are local time: pin the zone so snapshots do not depend on the
    machine."""
    os.environ["TZ"] = "UTC"
    time.tzset()


def events_of(run_dir: Path) -> List[dict]:
    """The log's lines as plain JSON (independent of the reader under test)."""
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def last_of(run_dir: Path, kind: str) -> dict:
    return [e for e in events_of(run_dir) if e["event"] == kind][-1]


def validated(events: Iterable[dict]) -> List[dict]:
    """Copies of ``events`` as a reader gets them (schema-checked, absent fields None;
    events of unknown types left out)."""
    checked = (validate(dict(e)) for e in events)
    return [e for e in checked if e is not None]


def read_validated(log: Path) -> List[dict]:
    return list(iter_events(log))


def screen_text(app) -> str:
    """What the terminal shows now, as plain text (the SVG screenshot's text)."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True,
                      color_system="truecolor", record=True, legacy_windows=False,
                      safe_box=False)
    console.print(app.screen._compositor.render_update(
        full=True, screen_stack=app._background_screens))
    return console.export_text()


async def settle(pilot, timeout: float = 10.0) -> None:
    """Wait until the app has read its whole log and drawn it."""
    app = pilot.app
    deadline = time.monotonic() + timeout
    while not app.caught_up:
        assert time.monotonic() < deadline, "the dashboard did not read its log in time"
        await pilot.pause(0.02)
    app.redraw(urgent=True)
    await pilot.pause()
    await pilot.pause()  # scrolling the log pane to its end waits for one refresh


async def wait_for(pilot, predicate, timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what or predicate}"
        await pilot.pause(0.05)


# Escape sequences (title, clipboard, clear screen, C1 CSI), markup that Rich/Textual would
# act on or choke on, and a bidi override: what a hostile log may hold in any string.
TITLE = "\x1b]0;pwned\x07"
HOSTILE = TITLE + "\x1b]52;c;cHduZWQ=\x07\x1b[2J\x9b2J x[/]y [link=https://evil.example]a[/link] " \
    "[bold red \u202egnp."


def inject_hostile(run_dir: Path) -> Path:
    """Put :data:`HOSTILE` into every string of ``run_dir``'s log that a viewer shows: run
    name and id, model, dataset, method, sorting, criterion, device, host, warnings, errors,
    tracebacks, the run's end status and message, a resume's checkpoint, rewound_to."""
    fields = {"run_started": ("run_id", "name", "method", "sorting", "criterion", "device",
                              "host"),
              "warning": ("message",), "error": ("message", "traceback"),
              "run_ended": ("message",), "resumed": ("checkpoint", "device"),
              "state_started": ("rewound_to", "method")}
    out = []
    for ev in events_of(run_dir):
        for name in fields.get(ev["event"], ()):
            ev[name] = f"{name}:{HOSTILE}"
        if ev["event"] == "run_started":
            ev["model"]["name"] = f"model:{HOSTILE}"
            ev["data"]["dataset"] = f"dataset:{HOSTILE}"
            ev["model"]["weights_source"] = f"weights:{HOSTILE}"
        out.append(json.dumps(ev))
    # a warning with every hostile string, so each one is on screen at least once
    out.insert(1, json.dumps({"v": 1, "event": "warning", "time": events_of(run_dir)[0]["time"],
                              "seq": 10_000, "message": f"warning:{HOSTILE}"}))
    (run_dir / "events.jsonl").write_text("\n".join(out) + "\n")
    return run_dir
