"""Escape sequences and markup in every string a log holds (issue 14 items 4 and 5) reach no
output raw: the real app (Pilot), the headless printer on a terminal and redirected."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys

from engine.pidfile import write_pidfile
from helpers.dash import (FAILED, HOSTILE, TITLE, UNSAFE, events_of, inject_hostile,
                          screen_text, settle, wait_for)
from tuiprune.dashboard.app import DashboardApp
from tuiprune.format import printable
from tuiprune.printer import Printer

SHOWN = printable(HOSTILE, newlines=False)  # how the payload must look on screen
# What Rich itself writes on a terminal: colours, cursor moves, erase line.
RICH_OWN = re.compile(r"\x1b\[(?:[0-9;]*m|\?25[lh]|2K|[0-9]*[ABG])|\r")


def assert_safe(text: str) -> None:
    bad = UNSAFE.search(text)
    assert bad is None, f"raw {bad.group()!r} at {text[max(0, bad.start() - 40):bad.end()]!r}"


async def test_the_app_shows_hostile_strings_escaped_and_never_as_markup(run_copy):
    run = inject_hostile(run_copy(FAILED))
    app = DashboardApp(run / "events.jsonl", run, mode="replay", speed=0)
    screens = []
    async with app.run_test(size=(250, 60)) as pilot:
        await settle(pilot)
        screens.append(screen_text(app))
        await pilot.press("left", "slash", *"warning")
        screens.append(screen_text(app))
    for text in screens:
        assert_safe(text)
    text = screens[0]
    for name in ("name", "model", "dataset", "warning", "message", "traceback"):
        assert f"{name}:{SHOWN[:60]}" in text, name
    assert "run failed" in text and "x[/]y [link=https://evil.example]a[/link]" in text
    assert f"λ (method:{SHOWN[:20]}" in text  # the border title that crashed on markup
    assert "RUNNING" not in text and "FAILED" in text


async def test_a_hostile_status_and_engine_log_stay_escaped(run_copy):
    run = run_copy(FAILED)
    lines = [json.dumps({**e, "status": f"x[/]y{TITLE}"}) if e["event"] == "run_ended"
             else json.dumps(e) for e in events_of(run)]
    (run / "events.jsonl").write_text("\n".join(lines) + "\n")
    app = DashboardApp(run / "events.jsonl", run, mode="watch")
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await pilot.press("S")  # says "the run has already ended (<status>)" in the key bar
        text = screen_text(app)
    assert_safe(text)
    assert f"has already ended (x[/]y{printable(TITLE)})" in text


async def test_the_end_of_a_hostile_engine_log_is_escaped(run_copy):
    run = run_copy(FAILED)
    lines = (run / "events.jsonl").read_text().splitlines()
    (run / "events.jsonl").write_text("\n".join(lines[:-1]) + "\n")  # no run_ended
    (run / "engine.log").write_text(f"epoch 2\n{HOSTILE}\nKilled\n")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_pidfile(run, dead.pid)
    app = DashboardApp(run / "events.jsonl", run, mode="watch")
    async with app.run_test(size=(250, 50)) as pilot:
        await settle(pilot)
        await wait_for(pilot, lambda: "ENGINE LOST" in screen_text(app)
                       and SHOWN[:40] in screen_text(app), what="engine lost")
        text = screen_text(app)
    assert_safe(text)


def printed(run, tty: bool) -> str:
    stream = io.StringIO()
    printer = Printer(stream=stream, tty=tty)
    for ev in events_of(run):
        printer(ev)
    printer.close()
    printer.summary(run)
    assert printer.failed == 0
    return stream.getvalue()


def test_the_printer_escapes_hostile_strings_on_a_terminal_and_redirected(run_copy):
    run = inject_hostile(run_copy(FAILED, "run" + TITLE))
    plain = printed(run, tty=False)
    assert_safe(plain)
    for name in ("run_id", "model", "weights", "dataset", "warning", "message"):
        assert f"{name}:{SHOWN[:60]}" in plain, name
    assert f"summary · run{printable(TITLE)}" in plain
    tty = printed(run, tty=True)
    assert "\x1b[" in tty  # it did draw on a terminal (colours, progress)
    own_removed = RICH_OWN.sub("", tty)
    assert_safe(own_removed)
    words = " ".join(own_removed.split())  # Rich wraps long lines at spaces on a terminal
    assert f"warning: warning:{SHOWN[:60]}" in words
    assert "x[/]y [link=https://evil.example]a[/link]" in words  # shown, not applied
