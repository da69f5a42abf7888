"""Fuzz: every reader of the event log survives a seeded corpus of ~500 mutated logs
(issue 14 item 6) without an exception, a hang, or a control character on its output.

The readers are one table, :data:`READERS`: a name and a function of the run directory that
raises on failure. Another reader joins the corpus with one line, e.g. the report (it passes;
left out only because it would add ~10 s)::

    "report": tuiprune.report.build_report,

The corpus (``tests/helpers/fuzz.py``) is built once per session; each reader's test reports
every log it failed on by name (base log and mutations), so a failure can be reproduced.
"""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path
from typing import Callable, Dict, List

import pytest

from engine.logread import ReadStats, first_event, iter_chunks, iter_events
from engine.rundir import EVENTS_FILE
from engine.runlog import read_log
from helpers.dash import UNSAFE
from helpers.fuzz import base_logs, corpus, unsafe_strings
from tuiprune.dashboard.context import Context
from tuiprune.dashboard.glyphs import ASCII, UNICODE
from tuiprune.dashboard.liveness import lost_event
from tuiprune.dashboard.player import Player
from tuiprune.dashboard.reducer import Reducer
from tuiprune.dashboard.widgets.accuracy import AccuracyChart
from tuiprune.dashboard.widgets.header import RunHeader
from tuiprune.dashboard.widgets.lambda_panel import LambdaPanel
from tuiprune.dashboard.widgets.logpane import LogPane
from tuiprune.dashboard.widgets.progress import EpochProgress
from tuiprune.dashboard.widgets.sparsity import SparsityPanel, SparsityRows
from tuiprune.dashboard.widgets.strip import StateStrip
from tuiprune.dashboard.widgets.system import SystemPane
from tuiprune.printer import Printer

MUTATED_LOGS = 500
HANG_S = 10.0  # far beyond any reader's time on these logs: only a hang gets near it
# Escape sequences Rich itself writes on a terminal (colours, cursor, erase line); any
# other ESC in the printer's TTY output came from the log.
RICH_OWN = re.compile(r"\x1b\[(?:[0-9;]*m|\?25[lh]|2K|[0-9]*[ABG])|\r")


def number(run: Path) -> int:
    """The mutated log's index in the corpus (its directory name starts with it)."""
    return int(run.name.split("-", 1)[0]) if run.name[:1].isdigit() else 0


def read_logread(run: Path) -> None:
    log = run / EVENTS_FILE
    chunks = list(iter_chunks(log))
    assert chunks[-1].caught_up
    stats = ReadStats()
    assert len(list(iter_events(log, stats))) == sum(len(c.events) for c in chunks)
    first_event(log)


def reduced(run: Path) -> Reducer:
    reducer = Reducer()
    for chunk in iter_chunks(run / EVENTS_FILE):
        reducer.apply_chunk(chunk)
    reducer.apply(lost_event(run, reducer.view.last_time))  # the synthetic event too
    return reducer


def read_reducer(run: Path) -> None:
    bad = unsafe_strings(reduced(run).view)
    assert not bad, f"unprintable strings in the view model: {bad[:3]!r}"


def render_widgets(run: Path) -> None:
    """Every widget's title and lines; the λ and sparsity panes (which draw the selected
    state) also for the first and the last state. Checked for control characters (the Pilot
    tests render the real screen). Unicode glyphs for every log, ASCII (``--ascii``, which
    only swaps glyphs) for every fourth."""
    reducer = reduced(run)
    for glyph_set in (UNICODE, ASCII) if number(run) % 4 == 0 else (UNICODE,):
        ctx = Context(reducer=reducer, glyphs=glyph_set, mode="watch")
        pane, selected = LogPane(ctx), (LambdaPanel(ctx), SparsityRows(ctx), SparsityPanel(ctx))
        texts = [pane.title()] + pane.body_lines()
        for widget in (RunHeader(ctx), StateStrip(ctx), AccuracyChart(ctx), EpochProgress(ctx),
                       SystemPane(ctx)):
            texts += [widget.title()] + widget.lines(78, 12)
        for ctx.chosen in {None, 0, len(reducer.view.states) - 1}:
            texts += [w.title() for w in selected] + [
                line for w in selected[:2] for line in w.lines(78, 12)]
        for text in texts:
            assert text is None or not UNSAFE.search(text.plain), repr(text.plain[:200])


BASE_LINES = {line for _, lines in base_logs() for line in lines}


def changed_objects(run: Path) -> List[object]:
    """The lines a mutation made (or moved), as the JSON values the engine would hand its
    listeners, after the log's first line (the run the printer speaks of). Unchanged lines
    are printed once, by the base logs' test below, not 500 times; lines this harness cannot
    parse are left out (the printer is handed objects, never text)."""
    lines = (run / EVENTS_FILE).read_bytes().decode("utf-8", "replace").splitlines()
    out = []
    for i, line in enumerate(lines):
        if i == 0 or line not in BASE_LINES:
            try:
                out.append(json.loads(line))
            except (ValueError, RecursionError):
                pass
    return out


def print_events(run: Path, objects: Callable[[Path], List[object]] = changed_objects) -> None:
    """Plain output for every log; Rich's terminal output for every other one."""
    for tty in (False, True) if number(run) % 2 == 0 else (False,):
        stream = io.StringIO()
        printer = Printer(stream=stream, tty=tty)
        for obj in objects(run):
            printer(obj)
        printer.close()
        assert printer.failed == 0, "a printer handler raised (see stderr)"
        shown = RICH_OWN.sub("", stream.getvalue()) if tty else stream.getvalue()
        assert not UNSAFE.search(shown), repr(UNSAFE.search(shown))


def print_summary(run: Path) -> None:
    stream = io.StringIO()
    Printer(stream=stream, tty=False).summary(run)
    assert not UNSAFE.search(stream.getvalue())


def play(run: Path) -> None:
    reducer, errors = Reducer(), []
    player = Player(run / EVENTS_FILE, reducer.apply_chunk, errors.append, speed=0)
    player.start()
    player.join(HANG_S)
    assert not player.is_alive(), "the replay player hung"
    assert not errors, errors
    assert player.caught_up


READERS: Dict[str, Callable[[Path], None]] = {
    "logread": read_logread,
    "runlog (resume scan, report)": lambda run: read_log(run / EVENTS_FILE),
    "reducer": read_reducer,
    "widgets": render_widgets,
    "printer listener": print_events,
    "printer summary": print_summary,
    "replay player": play,
}


@pytest.fixture(scope="module")
def mutated(tmp_path_factory) -> List[Path]:
    return corpus(tmp_path_factory.mktemp("fuzz"), MUTATED_LOGS)


@pytest.mark.parametrize("reader", list(READERS))
def test_every_reader_survives_the_mutated_logs(mutated, reader):
    failures, slowest = [], (0.0, "")
    for run in mutated:
        t = time.perf_counter()
        try:
            READERS[reader](run)
        except Exception as exc:  # noqa: BLE001 - collected, reported below
            failures.append(f"{run.name}: {type(exc).__name__}: {str(exc)[:300]}")
        slowest = max(slowest, (time.perf_counter() - t, run.name))
    assert not failures, f"{len(failures)} of {len(mutated)} logs broke {reader}:\n" + \
        "\n".join(failures[:20])
    assert slowest[0] < HANG_S, f"{reader} took {slowest[0]:.1f} s on {slowest[1]}"


def test_the_printer_shows_every_base_log_whole(tmp_path):
    for name, lines in base_logs():
        run = tmp_path / name
        run.mkdir()
        (run / EVENTS_FILE).write_text("\n".join(lines) + "\n")
        print_events(run, objects=lambda r: [json.loads(line) for line in lines])


def test_the_corpus_covers_every_mutation_and_hits_the_validator(mutated):
    names = " ".join(run.name for run in mutated)
    for op in ("truncate", "type_swap", "nonfinite", "huge", "sizing", "deep_json",
               "event_as_dict", "hostile_string", "seq_games", "garbage", "long_list",
               "delete_field"):
        assert op in names, op
    malformed = sum(c.malformed for run in mutated for c in iter_chunks(run / EVENTS_FILE))
    assert malformed > len(mutated) // 4  # the mutations reach the schema, not just JSON
