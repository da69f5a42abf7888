"""One run's dashboard: :class:`RunScreen` wires a log source (live :class:`Tailer` or replay
:class:`Player`) to the reducer and the widgets; :class:`DashboardApp` shows it alone
(``tuiprune watch RUN_DIR``, ``replay``), and the run browser pushes it over its list
(``tuiprune.dashboard.browser``), where Esc comes back.

Chunks of events arrive as :mod:`~tuiprune.dashboard.messages` from the source's thread and
are applied on the event loop. Drawing is driven by change, not by a clock: a chunk schedules
one redraw (at most ~10 a second), and a redraw touches only the widgets whose part of the view
model changed (``ViewWidget.change_key``). A live run's clock ticks once a second and refreshes
the header alone. For a run directory a timer asks :class:`EngineWatch` whether the engine is
gone without ``run_ended``; if so it feeds the reducer a synthetic ``engine_lost`` event.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Optional, Union

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.scrollbar import ScrollBarRender
from textual.timer import Timer

from engine.logread import Chunk
from engine.pidfile import request_stop
from tuiprune import format as fmt
from tuiprune.dashboard import keys
from tuiprune.dashboard import viewmodel as vm
from tuiprune.dashboard.context import Context
from tuiprune.dashboard.glyphs import glyphs
from tuiprune.dashboard.liveness import EngineWatch, engine_state
from tuiprune.dashboard.messages import ChunkRead, ReaderFailed
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
from tuiprune.dashboard.widgets.system import SystemPane
from tuiprune.tail import Tailer

REDRAW_S = 0.1
CATCH_UP_REDRAW_S = 0.5  # while reading a long log as fast as possible
CLOCK_S = 1.0
LIVENESS_S = 0.5
RECHECK_S = 0.1  # the engine was just seen gone: look again this soon
MESSAGE_S = 4.0
FIXED_LINES = 6  # header 2, state strip 1, progress 2, key bar 1
WIDGETS = "#header, #strip, #accuracy, #lambda, #progress, #system, #sparsity, #log, #keybar"


class AsciiScrollBarRender(ScrollBarRender):
    """Scrollbars drawn with spaces on a coloured thumb only (``--ascii``)."""

    VERTICAL_BARS = [" "] * 8
    HORIZONTAL_BARS = [" "] * 8


CSS_FILE = Path(__file__).with_name("dashboard.tcss")


class TuipruneApp(App[None]):
    """What every tuiprune screen runs in: the dashboard's stylesheet, ctrl+c quits from
    anywhere (also while typing a filter), ``--ascii`` for every screen."""

    CSS_PATH = [CSS_FILE]
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [Binding("ctrl+c", "quit", "quit", show=False, priority=True)]

    def __init__(self, ascii_only: bool = False) -> None:
        super().__init__()
        self.ascii_only = ascii_only

    def on_mount(self) -> None:
        if self.ascii_only:
            self.add_class("-ascii")


def _run_screen_attribute(name: str) -> property:
    return property(lambda app: getattr(app.run_screen, name),
                    doc=f"The run screen's ``{name}``.")


class DashboardApp(TuipruneApp):
    """One run's dashboard and nothing else (``tuiprune watch RUN_DIR``, ``replay``)."""

    def __init__(self, log_path: Path, run_dir: Optional[Path] = None, mode: str = "watch",
                 ascii_only: bool = False, speed: float = 10.0) -> None:
        super().__init__(ascii_only)
        self.run_screen = RunScreen(log_path, run_dir, mode, ascii_only, speed)

    def get_default_screen(self) -> Screen:
        return self.run_screen

    # what callers and tests read from the app is the run screen's
    ctx = _run_screen_attribute("ctx")
    source = _run_screen_attribute("source")
    caught_up = _run_screen_attribute("caught_up")
    reader_failed = _run_screen_attribute("reader_failed")
    chunks_applied = _run_screen_attribute("chunks_applied")
    clock_ticks = _run_screen_attribute("clock_ticks")
    redraw = _run_screen_attribute("redraw")
    fit_panes = _run_screen_attribute("fit_panes")


class RunScreen(Screen[None]):
    """One run's dashboard. ``back``: opened from the run browser (Esc goes back to it)."""

    BINDINGS = keys.bindings()

    def __init__(self, log_path: Path, run_dir: Optional[Path] = None, mode: str = "watch",
                 ascii_only: bool = False, speed: float = 10.0, back: bool = False) -> None:
        super().__init__()
        self.ctx = Context(glyphs=glyphs(ascii_only), mode=mode, run_dir=run_dir, back=back)
        self.log_path = Path(log_path)
        self.speed = speed
        self.source: Optional[Union[Tailer, Player]] = None
        self.engine_watch = EngineWatch(run_dir, self.log_path) if run_dir else None
        self.caught_up = False
        self.reader_failed = False
        self.chunks_applied = 0
        self.clock_ticks = 0
        self._shutting = threading.Event()
        self._log_opened = False
        self._redraw_timer: Optional[Timer] = None
        self._urgent = False  # the next scheduled redraw draws every change at once
        self._message_timer: Optional[Timer] = None
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
        yield SystemPane(ctx, id="system", classes="panel")
        yield SparsityPanel(ctx, id="sparsity", classes="panel")
        yield LogPane(ctx, id="log", classes="panel")
        yield KeyBar(ctx, id="keybar")

    def on_mount(self) -> None:
        if self.ctx.glyphs.ascii:
            for scroller in self.query("#sparsity, #log-view"):
                scroller.vertical_scrollbar.renderer = AsciiScrollBarRender
                scroller.horizontal_scrollbar.renderer = AsciiScrollBarRender
        self.show_log(False)
        if self.ctx.mode == "replay":
            self.source = self.ctx.player = Player(self.log_path, self._deliver,
                                                   self._reader_failed, self.speed)
        else:
            self.source = Tailer(self.log_path, self._deliver, self._reader_failed)
        self.source.start()
        self.set_interval(CLOCK_S, self._tick_clock)
        if self.engine_watch is not None:
            self.set_interval(LIVENESS_S, self.check_liveness)
        self.redraw(force=True)

    def on_resize(self) -> None:
        self.call_after_refresh(self.redraw, True)  # titles are cut to the new widths

    def on_unmount(self) -> None:  # quit, or Esc back to the run browser
        self._shutting.set()
        if self.source is not None:
            self.source.stop()

    # ---- events in (the source's thread posts a message and waits until it is applied)
    def _deliver(self, chunk: Chunk) -> None:
        done = threading.Event()
        if not self.post_message(ChunkRead(chunk, done)):
            return  # the app is closing
        while not done.wait(0.25):
            if self._shutting.is_set():
                return

    def _reader_failed(self, error: BaseException) -> None:
        reader = "replay" if isinstance(self.source, Player) else "log reader"
        self.post_message(ReaderFailed(reader, error))

    def on_chunk_read(self, message: ChunkRead) -> None:
        try:
            self.apply_chunk(message.chunk)
        finally:
            message.done.set()

    def on_reader_failed(self, message: ReaderFailed) -> None:
        self.reader_failed = True
        error = message.error
        self.ctx.reducer.note("error", f"the {message.reader} stopped: "
                              f"{type(error).__name__}: {error}; what was read so far is shown")
        self.schedule_redraw()

    def apply_chunk(self, chunk: Chunk) -> None:
        reducer = self.ctx.reducer
        try:
            reducer.apply_chunk(chunk)
        except Exception as exc:  # noqa: BLE001 - a bug must not take the screen away
            reducer.note("error", f"the dashboard could not show some events "
                         f"({type(exc).__name__}: {exc}); it goes on with the rest")
        self.chunks_applied += 1
        if chunk.caught_up and not self.caught_up:
            self.caught_up = True
            self._urgent = True  # the backlog is read: show all of it now
            view = self.ctx.view
            if self.ctx.run_dir is None and view.ended is None and view.events:
                reducer.note("warning", "the log ends without run_ended and has no run "
                             "directory to ask whether its engine lives")
        self.schedule_redraw()

    # ---- drawing
    def schedule_redraw(self, at: Optional[float] = None) -> None:
        """Redraw what changed soon: at most every REDRAW_S (CATCH_UP_REDRAW_S while a
        backlog is read as fast as it goes), or at monotonic time ``at``."""
        if self._redraw_timer is not None:
            return
        pause = CATCH_UP_REDRAW_S if self.catching_up() else REDRAW_S
        when = self._last_redraw + pause if at is None else at
        delay = max(0.01, when - time.monotonic())  # a Timer needs a delay > 0
        self._redraw_timer = self.set_timer(delay, self._scheduled_redraw)

    def _scheduled_redraw(self) -> None:
        self._redraw_timer, urgent, self._urgent = None, self._urgent, False
        self.redraw(urgent=urgent)

    def _tick_clock(self) -> None:
        """Once a second: the header's clock (it redraws only when its text changed)."""
        self.clock_ticks += 1
        self.query_one(RunHeader).sync()

    def catching_up(self) -> bool:
        """Reading a backlog as fast as it goes (attach to a long run, replay at speed 0)."""
        player = self.ctx.player
        return not self.caught_up and (player is None or player.speed == 0)

    def redraw(self, force: bool = False, urgent: bool = False) -> None:
        """Bring the widgets up to date with the view model; ``force``: all of them;
        ``urgent``: now, also those that limit how often they redraw (after a key)."""
        self._last_redraw = time.monotonic()
        view = self.ctx.view
        if (view.errors or view.status == vm.LOST) and not self._log_opened:
            self.show_log(True)
        changed, due = False, []
        for widget in self.query(WIDGETS):
            changed |= widget.sync(force, urgent)
            if getattr(widget, "due", None) is not None:
                due.append(widget.due)
        if changed or force:
            self.fit_panes()
        if due:  # a widget put a change off: draw it when it is due
            self.schedule_redraw(at=min(due))

    def fit_panes(self) -> None:
        """Share the lines between charts, sparsity rows and the log pane (Textual's fr units
        do not give the lines a capped pane leaves over to its neighbour)."""
        free = self.size.height - FIXED_LINES
        log = self.query_one(LogPane)
        log_h = max(6, free * 2 // 5) if log.display else 0
        charts_min = 5 if log.display else 8
        system_h = self.query_one(SystemPane).height_for(free - log_h - charts_min - 3)
        sparsity = self.query_one(SparsityPanel)
        sparsity_h = max(3, min(sparsity.wanted_height, free - log_h - system_h - charts_min))
        heights = {"#charts": free - log_h - system_h - sparsity_h, "#sparsity": sparsity_h,
                   "#log": log_h, "#system": system_h}
        for selector, height in heights.items():
            widget = self.query_one(selector)
            if widget.styles.height is None or widget.styles.height.value != height:
                widget.styles.height = max(0, height)

    def say(self, message: str) -> None:
        """A short message in the key bar (for MESSAGE_S seconds)."""
        self.ctx.message = fmt.printable(message, newlines=False)
        if self._message_timer is not None:
            self._message_timer.stop()
        self._message_timer = self.set_timer(MESSAGE_S, self._clear_message)
        self.redraw(urgent=True)

    def _clear_message(self) -> None:
        self._message_timer = None
        self.ctx.message = ""
        self.redraw()

    # ---- liveness
    def check_liveness(self) -> None:
        """Feed the reducer what :class:`EngineWatch` derives (``engine_lost``, a note)."""
        watch = self.engine_watch
        tailer = self.source if isinstance(self.source, Tailer) else None
        event = watch.look(self.ctx.view, self.caught_up or self.reader_failed,
                           tailer.consumed if tailer is not None else None)
        if event is not None:
            self.ctx.reducer.apply(event)
            self.schedule_redraw()
        elif watch.waiting_for_reader:  # give the reader one more look, then decide
            if tailer is not None:
                tailer.writer_gone()
            self.set_timer(RECHECK_S, self.check_liveness)

    # ---- actions
    def check_action(self, action: str, parameters: tuple) -> Optional[bool]:
        return keys.action_allowed(action, self.ctx.mode, self.ctx.back)

    def action_quit(self) -> None:
        self.app.exit()

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_select(self, delta: int) -> None:
        self.ctx.select(delta)
        self.redraw(urgent=True)

    def show_log(self, show: bool) -> None:
        pane = self.query_one(LogPane)
        pane.display = show
        self.fit_panes()
        if show:
            self._log_opened = True
            pane.sync(force=True)
            pane.show_newest()

    def action_toggle_log(self) -> None:
        self.show_log(not self.query_one(LogPane).display)

    def action_toggle_system(self) -> None:
        self.query_one(SystemPane).toggle()
        self.fit_panes()

    def action_filter_log(self) -> None:
        self.show_log(True)
        self.query_one(LogPane).open_filter()

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(self.ctx.mode, self.ctx.glyphs, self.ctx.back))

    def action_stop_run(self) -> None:
        view, run_dir = self.ctx.view, self.ctx.run_dir
        if run_dir is None:
            self.say("no run directory: nothing to stop")
        elif view.finished:
            self.say(f"the run has already ended ({view.status})")
        elif engine_state(run_dir) is False:
            self.say("the engine is not running: nothing to stop")
        else:
            self.app.push_screen(ConfirmStop(fmt.printable(run_dir)), self._confirmed_stop)

    def _confirmed_stop(self, yes: Optional[bool]) -> None:
        if not yes:
            self.say("stop cancelled")
            return
        if request_stop(self.ctx.run_dir):
            self.ctx.stop_requested = True
            self.say("stop requested: the engine finishes the batch, checkpoints and stops")
        else:
            self.say("the engine was not running")

    def action_toggle_pause(self) -> None:
        if self.ctx.player is not None:
            self.ctx.player.toggle_pause()
            self.redraw(urgent=True)

    def action_speed(self, steps: int) -> None:
        if self.ctx.player is not None:
            self.ctx.player.change_speed(steps)
            self.redraw(urgent=True)

    def action_jump_to_end(self) -> None:
        if self.ctx.player is not None:
            self.ctx.player.jump_to_end()
            self.redraw(urgent=True)
