"""The dashboard App: wires a log source (live :class:`Tailer` or replay :class:`Player`) to
the reducer and the widgets.

Events arrive in batches from the source's thread and are applied on the event loop; the
screen is redrawn from a 10 Hz timer, only when something changed. For a live run a second
timer watches the engine process: if it is gone without ``run_ended``, the run is marked
"engine lost" and the end of ``engine.log`` goes to the log pane.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Optional, Union

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.scrollbar import ScrollBarRender

from engine.pidfile import request_stop
from tuiprune.dashboard import keys
from tuiprune.dashboard import viewmodel as vm
from tuiprune.dashboard.context import Context
from tuiprune.dashboard.glyphs import glyphs
from engine.rundir import ENGINE_LOG
from tuiprune.dashboard.liveness import engine_state, gone_reason, tail_lines
from tuiprune.dashboard.player import Player
from tuiprune.dashboard.widgets.accuracy import AccuracyChart
from tuiprune.dashboard.widgets.header import RunHeader
from tuiprune.dashboard.widgets.keybar import KeyBar
from tuiprune.dashboard.widgets.lambda_panel import LambdaPanel
from tuiprune.dashboard.widgets.logpane import LogPane
from tuiprune.dashboard.widgets.progress import EpochProgress
from tuiprune.dashboard.widgets.screens import ConfirmStop, HelpScreen
from tuiprune.dashboard.widgets.sparsity import SparsityPanel
from tuiprune.dashboard.widgets.strip import StateStrip
from tuiprune.eventlog import Batch, Tailer

REDRAW_S = 0.1
CATCH_UP_REDRAW_S = 0.5  # while reading a long log as fast as possible
LIVENESS_S = 0.5
MESSAGE_S = 4.0
FIXED_LINES = 6  # header 2, state strip 1, progress 2, key bar 1


class AsciiScrollBarRender(ScrollBarRender):
    """Scrollbars drawn with spaces on a coloured thumb only (``--ascii``)."""

    VERTICAL_BARS = [" "] * 8
    HORIZONTAL_BARS = [" "] * 8


class DashboardApp(App[None]):
    CSS_PATH = "dashboard.tcss"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = keys.bindings() + [Binding("ctrl+c", "quit", "quit", show=False, priority=True)]

    def __init__(self, log_path: Path, run_dir: Optional[Path] = None, mode: str = "watch",
                 ascii_only: bool = False, speed: float = 10.0) -> None:
        super().__init__()
        self.ctx = Context(glyphs=glyphs(ascii_only), mode=mode, run_dir=run_dir)
        self.log_path = Path(log_path)
        self.speed = speed
        self.source: Optional[Union[Tailer, Player]] = None
        self.caught_up = False
        self.batches_applied = 0
        self._dirty = True
        self._event_loop: Optional[asyncio.AbstractEventLoop] = None
        self._shutting = threading.Event()
        self._dead_size: Optional[int] = None
        self._remote_noted = False
        self._log_opened = False
        self._message_until = 0.0
        self._last_second = 0
        self._last_redraw = 0.0

    # ---- layout
    def compose(self) -> ComposeResult:
        ctx = self.ctx
        yield RunHeader(ctx, id="header")
        yield StateStrip(ctx, id="strip")
        with Horizontal(id="charts"):
            yield AccuracyChart(ctx, id="accuracy", classes="panel")
            yield LambdaPanel(ctx, id="lambda", classes="panel")
        yield EpochProgress(ctx, id="progress")
        yield SparsityPanel(ctx, id="sparsity", classes="panel")
        yield LogPane(ctx, id="log", classes="panel")
        yield KeyBar(ctx, id="keybar")

    def on_mount(self) -> None:
        if self.ctx.glyphs.ascii:
            self.add_class("-ascii")
            for scroller in self.query("#sparsity, #log-view"):
                scroller.vertical_scrollbar.renderer = AsciiScrollBarRender
                scroller.horizontal_scrollbar.renderer = AsciiScrollBarRender
        self.show_log(False)
        self._event_loop = asyncio.get_running_loop()
        if self.ctx.mode == "replay":
            self.source = self.ctx.player = Player(self.log_path, self._deliver, self.speed)
        else:
            self.source = Tailer(self.log_path, self._deliver)
        self.source.start()
        self.set_interval(REDRAW_S, self._tick)
        if self.ctx.run_dir is not None:
            self.set_interval(LIVENESS_S, self.check_liveness)
        self.redraw()

    def on_resize(self) -> None:
        self.call_after_refresh(self.redraw)  # titles are cut to the new widths

    def on_unmount(self) -> None:
        self._shutting.set()
        if self.source is not None:
            self.source.stop()

    # ---- events in (the source's thread hands batches to the event loop and waits)
    def _deliver(self, batch: Batch) -> None:
        done = threading.Event()
        try:
            self._event_loop.call_soon_threadsafe(self._ingest, batch, done)
        except RuntimeError:  # the loop is closed: the app has gone
            return
        while not done.wait(0.25):
            if self._shutting.is_set():
                return

    def _ingest(self, batch: Batch, done: threading.Event) -> None:
        try:
            self.ctx.reducer.apply_batch(batch)
            self.batches_applied += 1
            if batch.caught_up and not self.caught_up:
                self.caught_up = True
                view = self.ctx.view
                if self.ctx.run_dir is None and view.ended is None and view.events:
                    self.ctx.reducer.note("warning", "the log ends without run_ended and has "
                                          "no run directory to ask whether its engine lives")
            self._dirty = True
        finally:
            done.set()

    # ---- drawing
    def _tick(self) -> None:
        now = time.monotonic()
        if self.ctx.message and now > self._message_until:
            self.ctx.message = ""
            self._dirty = True
        if self.ctx.view.status == vm.RUNNING and int(now) != self._last_second:
            self._last_second = int(now)
            self._dirty = True  # the clock in the header
        if self._dirty and (now - self._last_redraw >= CATCH_UP_REDRAW_S
                            or not self.catching_up()):
            self.redraw()

    def catching_up(self) -> bool:
        """Reading a backlog as fast as it goes (attach to a long run, replay at speed 0)."""
        player = self.ctx.player
        return not self.caught_up and (player is None or player.speed == 0)

    def redraw(self) -> None:
        """Bring every widget up to date with the view model now."""
        self._dirty = False
        self._last_redraw = time.monotonic()
        view = self.ctx.view
        if (view.errors or view.status == vm.LOST) and not self._log_opened:
            self.show_log(True)
        for widget in self.query("#header, #strip, #accuracy, #lambda, #progress, #sparsity, "
                                 "#log, #keybar"):
            widget.sync()
        self.fit_panes()

    def fit_panes(self) -> None:
        """Share the lines between charts, sparsity rows and the log pane (Textual's fr units
        do not give the lines a capped pane leaves over to its neighbour)."""
        free = self.size.height - FIXED_LINES
        log = self.query_one(LogPane)
        log_h = max(6, free * 2 // 5) if log.display else 0
        charts_min = 5 if log.display else 8
        sparsity = self.query_one(SparsityPanel)
        sparsity_h = max(3, min(sparsity.wanted_height, free - log_h - charts_min))
        heights = {"#charts": free - log_h - sparsity_h, "#sparsity": sparsity_h, "#log": log_h}
        for selector, height in heights.items():
            widget = self.query_one(selector)
            if widget.styles.height is None or widget.styles.height.value != height:
                widget.styles.height = max(0, height)

    def say(self, message: str) -> None:
        """A short message in the key bar."""
        self.ctx.message = message
        self._message_until = time.monotonic() + MESSAGE_S
        self.redraw()

    # ---- liveness
    def check_liveness(self) -> None:
        """Mark the run "engine lost" when its engine is gone and the log, read to its end,
        has no ``run_ended``."""
        view, run_dir = self.ctx.view, self.ctx.run_dir
        if run_dir is None or view.ended is not None or view.status == vm.LOST:
            self._dead_size = None
            return
        exists = self.log_path.exists()
        if exists and not self.caught_up:
            return
        alive = engine_state(run_dir)
        if alive is None:
            if not self._remote_noted:
                self._remote_noted = True
                self.ctx.reducer.note("warning", "the engine runs on another host: this "
                                      "dashboard cannot tell whether it is alive")
                self._dirty = True
            return
        if alive:
            self._dead_size = None
            return
        size = self.log_path.stat().st_size if exists else 0
        if self._dead_size != size:  # give the reader one more round to reach the end
            self._dead_size = size
            if isinstance(self.source, Tailer):
                self.source.flush_torn_tail()
            return
        if isinstance(self.source, Tailer) and self.source.consumed < size:
            return
        self.ctx.reducer.mark_engine_lost(gone_reason(run_dir),
                                          tail_lines(run_dir / ENGINE_LOG))
        self._dirty = True

    # ---- actions
    def check_action(self, action: str, parameters: tuple) -> Optional[bool]:
        return keys.action_allowed(action, self.ctx.mode)

    def action_select(self, delta: int) -> None:
        self.ctx.select(delta)
        self.redraw()

    def show_log(self, show: bool) -> None:
        pane = self.query_one(LogPane)
        pane.display = show
        self.fit_panes()
        if show:
            self._log_opened = True
            pane.sync()
            pane.show_newest()

    def action_toggle_log(self) -> None:
        self.show_log(not self.query_one(LogPane).display)

    def action_filter_log(self) -> None:
        self.show_log(True)
        self.query_one(LogPane).open_filter()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.ctx.mode, self.ctx.glyphs))

    def action_stop_run(self) -> None:
        view, run_dir = self.ctx.view, self.ctx.run_dir
        if run_dir is None:
            self.say("no run directory: nothing to stop")
        elif view.finished:
            self.say(f"the run has already ended ({view.status})")
        elif engine_state(run_dir) is not True:
            self.say("the engine is not running here: nothing to stop")
        else:
            self.push_screen(ConfirmStop(str(run_dir)), self._confirmed_stop)

    def _confirmed_stop(self, yes: Optional[bool]) -> None:
        if not yes:
            self.say("stop cancelled")
            return
        if request_stop(self.ctx.run_dir):
            self.ctx.view.stop_requested = True
            self.say("stop requested: the engine finishes the batch, checkpoints and stops")
        else:
            self.say("the engine was not running")

    def action_toggle_pause(self) -> None:
        if self.ctx.player is not None:
            self.ctx.player.toggle_pause()
            self.redraw()

    def action_speed(self, steps: int) -> None:
        if self.ctx.player is not None:
            self.ctx.player.change_speed(steps)
            self.redraw()

    def action_jump_to_end(self) -> None:
        if self.ctx.player is not None:
            self.ctx.player.jump_to_end()
            self.redraw()
