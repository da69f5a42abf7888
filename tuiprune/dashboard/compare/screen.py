"""The compare screen: 2–6 runs side by side while they run.

Each run's log is followed by a :class:`~tuiprune.tail.Tailer` of its own and folded by a
:class:`~tuiprune.dashboard.reducer.Reducer` of its own (the dashboard's reader and fold); an
:class:`~tuiprune.dashboard.liveness.EngineWatch` per run derives "engine lost". Drawing goes by
change, as in the dashboard: the panels key on the reducers' ``states``/``structure``/``run``
counters, so the stream of batch and λ events redraws nothing, and a redraw happens at most
every :data:`REDRAW_S`.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import List, Optional, Sequence

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.screen import Screen
from textual.timer import Timer

from engine.logread import Chunk
from engine.rundir import EVENTS_FILE
from tuiprune import format as fmt
from tuiprune.dashboard.browser.entries import Entry
from tuiprune.dashboard.browser.screen import LAST_KEYS, help_text
from tuiprune.dashboard.browser.widgets import ScreenKeyBar
from tuiprune.dashboard.compare.model import CompareContext, ComparedRun
from tuiprune.dashboard.compare.panels import (CompareHeader, EpochChart, LayerRows,
                                               RunLines, ScrollPanel, SparsityChart)
from tuiprune.dashboard.glyphs import Glyphs
from tuiprune.dashboard.keys import Key, bindings_of
from tuiprune.dashboard.liveness import EngineWatch
from tuiprune.dashboard.messages import ReaderFailed, RunChunkRead
from tuiprune.dashboard.widgets.screens import HelpScreen
from tuiprune.tail import Tailer

REDRAW_S = 0.25
LIVENESS_S = 0.5
MESSAGE_S = 4.0
FIXED_LINES = 3  # header 2, key bar 1
RUNS_MIN = 24  # the runs pane's narrowest
PANELS = "#compare-header, #acc-sparsity, #acc-epochs, #layers, #runs-diff, #compare-keybar"

COMPARE_KEYS = (
    Key("escape", "back", "Esc", "Esc", "back to the list of runs", "back"),
    Key("v", "toggle_value", "v", "v", "plot best val or final val (after the hard cut)",
        "best/final"),
    Key("left", "select(-1)", "←", "<-", "per-layer table: previous state", ""),
    Key("right", "select(1)", "→", "->", "per-layer table: next state", ""),
    Key("up,down,pageup,pagedown", "", "↑↓ PgUp PgDn", "Up Dn PgUp PgDn",
        "scroll the focused pane (Tab moves focus)", ""),
) + LAST_KEYS
HELP_NOTE = ("Each run keeps its letter and colour in every panel (in --ascii its letter is "
             "its mark in the charts).\nAccuracy vs sparsity: one point per state that has "
             "ended. Per layer: heads kept and MLP sparsity in the model the state ends with "
             "(Refill's step k and RSST's hard cut line up in state k+1).\nAny key closes "
             "this help.")


def compared_runs(entries: Sequence[Entry], slots: Optional[Sequence[int]] = None
                  ) -> List[ComparedRun]:
    """The runs of ``entries`` to compare; ``slots``: their places (default 0, 1, …). A run is
    called by its own name (a sweep member's), with its sweep's when another has that name."""
    slots = list(range(len(entries))) if slots is None else list(slots)
    names = [e.name for e in entries]
    return [ComparedRun(slot, e.path, fmt.printable(e.name, newlines=False)
                        if names.count(e.name) == 1 else e.cells["name"], dict(e.config))
            for slot, e in zip(slots, entries)]


class CompareScreen(Screen[None]):
    BINDINGS = bindings_of(COMPARE_KEYS)

    def __init__(self, runs: List[ComparedRun], g: Glyphs, where: Path) -> None:
        super().__init__()
        self.ctx = CompareContext(runs, g, fmt.printable(where, newlines=False))
        self.tailers: List[Tailer] = []
        self.watches = [EngineWatch(r.path, r.path / EVENTS_FILE) for r in runs]
        self.caught_up = [False] * len(runs)
        self.reader_failed = [False] * len(runs)  # its log is then judged as it stands
        self.chunks_applied = 0
        self.redraws = 0
        self._shutting = threading.Event()
        self._redraw_timer: Optional[Timer] = None
        self._message_timer: Optional[Timer] = None
        self._last_redraw = 0.0

    def compose(self) -> ComposeResult:
        ctx = self.ctx
        yield CompareHeader(ctx, id="compare-header")
        with Horizontal(id="compare-charts"):
            yield SparsityChart(ctx, id="acc-sparsity", classes="panel")
            yield EpochChart(ctx, id="acc-epochs", classes="panel")
        with Horizontal(id="compare-bottom"):
            yield ScrollPanel(LayerRows(ctx, id="layer-rows"),
                              "State {state} per layer{sep}heads kept, MLP sparsity",
                              id="layers", classes="panel")
            yield ScrollPanel(RunLines(ctx, id="run-lines"),
                              "Runs{sep}config keys that differ", id="runs-diff",
                              classes="panel")
        yield ScreenKeyBar(ctx, COMPARE_KEYS, id="compare-keybar")

    def on_mount(self) -> None:
        if self.ctx.glyphs.ascii:
            from tuiprune.dashboard.app import AsciiScrollBarRender

            for scroller in self.query("#layers, #runs-diff"):
                scroller.vertical_scrollbar.renderer = AsciiScrollBarRender
                scroller.horizontal_scrollbar.renderer = AsciiScrollBarRender
        for i, run in enumerate(self.ctx.runs):
            tailer = Tailer(run.path / EVENTS_FILE, self._deliverer(i), self._failed(i))
            self.tailers.append(tailer)
            tailer.start()
        self.set_interval(LIVENESS_S, self.check_liveness)
        self.redraw(force=True)

    def on_unmount(self) -> None:  # Esc back to the list, or quit
        self._shutting.set()
        for tailer in self.tailers:
            tailer.stop()

    # ---- events in (each tailer's thread posts and waits until its chunk is applied)
    def _deliverer(self, i: int):
        def deliver(chunk: Chunk) -> None:
            done = threading.Event()
            if not self.post_message(RunChunkRead(chunk, done, run=i)):
                return
            while not done.wait(0.25):
                if self._shutting.is_set():
                    return
        return deliver

    def _failed(self, i: int):
        letter = self.ctx.runs[i].letter

        def failed(error: BaseException) -> None:
            self.reader_failed[i] = True
            self.post_message(ReaderFailed(f"log reader of run {letter}", error))
        return failed

    def on_run_chunk_read(self, message: RunChunkRead) -> None:
        try:
            reducer = self.ctx.runs[message.run].reducer
            try:
                reducer.apply_chunk(message.chunk)
            except Exception as exc:  # noqa: BLE001 - a bug must not take the screen away
                reducer.note("error", f"the compare screen could not show some events "
                             f"({type(exc).__name__}: {exc})")
            self.chunks_applied += 1
            if message.chunk.caught_up and not self.caught_up[message.run]:
                self.caught_up[message.run] = True
                self.look(message.run)  # a first look now: "live" only while it is
            self.schedule_redraw()
        finally:
            message.done.set()

    def on_reader_failed(self, message: ReaderFailed) -> None:
        error = message.error
        self.say(f"the {message.reader} stopped: {type(error).__name__}: {error}",
                 keep=True)

    def check_liveness(self) -> None:
        """Every LIVENESS_S, per run: is its engine gone?"""
        for i in range(len(self.tailers)):
            self.look(i)

    def look(self, i: int) -> None:
        """Ask run ``i``'s EngineWatch (once its directory exists) whether its engine is gone;
        it says so on its second look at an unchanged log."""
        run, watch, tailer = self.ctx.runs[i], self.watches[i], self.tailers[i]
        if not run.path.is_dir():
            return
        event = watch.look(run.view, self.caught_up[i] or self.reader_failed[i], tailer.consumed)
        if event is not None:
            run.reducer.apply(event)
            self.schedule_redraw()
        elif watch.waiting_for_reader:
            tailer.writer_gone()

    # ---- drawing
    def schedule_redraw(self) -> None:
        if self._redraw_timer is None:
            delay = max(0.01, self._last_redraw + REDRAW_S - time.monotonic())
            self._redraw_timer = self.set_timer(delay, self._scheduled_redraw)

    def _scheduled_redraw(self) -> None:
        self._redraw_timer = None
        self.redraw()

    def redraw(self, force: bool = False) -> None:
        """Redraw the panels whose data changed (``force``: all of them)."""
        self._last_redraw = time.monotonic()
        changed = False
        for panel in self.query(PANELS):
            changed |= panel.sync(force, urgent=True)
        if changed or force:
            self.redraws += 1
            self.fit()

    def fit(self) -> None:
        """Charts get about half the lines; the per-layer table the width it needs with its
        border, padding and scrollbar (up to what leaves the runs pane RUNS_MIN cells)."""
        free = self.size.height - FIXED_LINES
        charts = max(6, min(free // 2, 20))
        sizes = {"#compare-charts": ("height", charts),
                 "#compare-bottom": ("height", max(0, free - charts)),
                 "#layers": ("width", max(20, min(self.query_one(LayerRows).wanted_width() + 6,
                                                  self.size.width - RUNS_MIN)))}
        for selector, (dim, value) in sizes.items():
            widget = self.query_one(selector)
            now = getattr(widget.styles, dim)
            if now is None or now.value != value:
                setattr(widget.styles, dim, value)

    def on_resize(self) -> None:
        self.call_after_refresh(self.redraw, True)

    def say(self, message: str, keep: bool = False) -> None:
        """A message in the key bar (for MESSAGE_S seconds unless ``keep``)."""
        self.ctx.message = fmt.printable(message, newlines=False)
        if self._message_timer is not None:
            self._message_timer.stop()
            self._message_timer = None
        if not keep:
            self._message_timer = self.set_timer(MESSAGE_S, lambda: self.say("", keep=True))
        self.redraw()

    # ---- actions
    def action_back(self) -> None:
        self.app.pop_screen()

    def action_quit(self) -> None:
        self.app.exit()

    def action_toggle_value(self) -> None:
        self.ctx.toggle_mode()
        self.redraw()

    def action_select(self, delta: int) -> None:
        self.ctx.select(delta)
        self.redraw()

    def action_help(self) -> None:
        g = self.ctx.glyphs
        self.app.push_screen(HelpScreen("", g, text=help_text("Keys: comparing runs",
                                                              COMPARE_KEYS, HELP_NOTE, g)))
