"""The run browser's screen: the run table of a directory, live; Enter opens a run's
dashboard (Esc comes back), space marks runs and ``c`` compares them.

A :class:`~tuiprune.dashboard.browser.entries.Lister` thread lists the directory about once a
second (reading only what the logs gained) and posts the rows when they changed; it pauses
while a dashboard or the compare screen covers the list.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from rich.text import Text
from textual.app import ComposeResult
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Input

from engine.rundir import EVENTS_FILE
from tuiprune.dashboard.browser.entries import SORTS, Entry, Lister
from tuiprune.dashboard.browser.state import MAX_COMPARED, BrowserState
from tuiprune.dashboard.browser.table import RunTable
from tuiprune.dashboard.browser.widgets import BrowserHeader, DetailLine, ScreenKeyBar
from tuiprune.dashboard.glyphs import Glyphs
from tuiprune.dashboard.keys import Key, bindings_of
from tuiprune.dashboard.messages import ReaderFailed, RunsListed
from tuiprune.dashboard.widgets.screens import HelpScreen, key_lines
from tuiprune.format import printable

MESSAGE_S = 4.0

LAST_KEYS = (  # the browser's and the compare screen's
    Key("q", "quit", "q", "q", "quit (live runs go on)", "quit"),
    Key("ctrl+c", "", "ctrl+c", "ctrl+c", "quit, also while typing a filter", ""),
    Key("question_mark", "help", "?", "?", "this help", "help"),
)
BROWSER_KEYS = (
    Key("up,down,pageup,pagedown,home,end", "", "↑↓ PgUp PgDn", "Up Dn PgUp PgDn",
        "move in the list", ""),
    Key("enter", "", "Enter", "Enter", "open the run's dashboard (Esc comes back)", "open"),
    Key("space", "mark", "space", "space",
        f"mark or unmark for comparing (2 to {MAX_COMPARED} runs)", "mark"),
    Key("c", "compare", "c", "c", "compare the marked runs side by side", "compare"),
    Key("u", "unmark", "u", "u", "unmark every run", ""),
    Key("s", "next_sort", "s", "s", "sort by the next column", "sort"),
    Key("r", "reverse", "r", "r", "reverse the order", ""),
    Key("slash", "filter", "/", "/", "filter by text (Enter keeps it, Esc clears it)",
        "filter"),
    Key("f", "status_filter", "f", "f", "show one status only (cycles through those listed)",
        "status"),
) + LAST_KEYS
HELP_NOTE = (f"Sort columns: {', '.join(s.name for s in SORTS)}. A marked run gets a letter "
             "and a colour that it keeps on the compare screen.\nThe list reads the runs again "
             "about once a second: new runs appear, live ones move on.\nStatus: live, "
             "completed, stopped, failed, lost (the engine is gone without a word), pending "
             "(a sweep member not started).\nAny key closes this help.")


def help_text(title: str, table, note: str, g: Glyphs) -> Text:
    text = Text(f"{title}\n\n", style="bold")
    text.append_text(key_lines(table, g))
    text.append(f"\n{note}", style="dim")
    return text


class BrowserScreen(Screen[None]):
    BINDINGS = bindings_of(BROWSER_KEYS)

    def __init__(self, directory: Path, g: Glyphs) -> None:
        super().__init__()
        self.state = BrowserState(Path(directory), g)
        self.lister: Optional[Lister] = None
        self._message_timer: Optional[Timer] = None
        self._table_key: Optional[tuple] = None

    def compose(self) -> ComposeResult:
        g = self.state.glyphs
        yield BrowserHeader(self.state, id="browser-header")
        yield RunTable(g, id="runs")
        yield Input(placeholder="filter the runs: Enter keeps it, Esc clears it",
                    id="browser-filter")
        yield DetailLine(self.state, id="browser-detail")
        yield ScreenKeyBar(self.state, BROWSER_KEYS, id="browser-keybar")

    @property
    def table(self) -> RunTable:
        return self.query_one(RunTable)

    def on_mount(self) -> None:
        self.query_one(Input).display = False
        if self.state.glyphs.ascii:
            from tuiprune.dashboard.app import AsciiScrollBarRender

            self.table.vertical_scrollbar.renderer = AsciiScrollBarRender
            self.table.horizontal_scrollbar.renderer = AsciiScrollBarRender
        self.lister = Lister(self.state.directory, self._listed, self._lister_failed)
        self.lister.start()
        self.table.focus()
        self.sync()

    def on_unmount(self) -> None:
        if self.lister is not None:
            self.lister.stop()

    def on_screen_suspend(self) -> None:  # a dashboard or the compare screen covers the list
        if self.lister is not None:
            self.lister.pause()

    def on_screen_resume(self) -> None:
        if self.lister is not None:
            self.lister.resume()

    # ---- rows in (from the lister's thread)
    def _listed(self, entries: List[Entry], problem: str) -> None:
        self.post_message(RunsListed(entries, problem))

    def _lister_failed(self, error: BaseException) -> None:
        self.post_message(ReaderFailed("run lister", error))

    def on_runs_listed(self, message: RunsListed) -> None:
        self.state.set_entries(message.entries, message.problem)
        self.sync()

    def on_reader_failed(self, message: ReaderFailed) -> None:
        error = message.error
        self.state.problem = (f"the {message.reader} stopped ({type(error).__name__}: "
                              f"{error}); the list is no longer updated")
        self.state.changed()
        self.sync()

    # ---- drawing
    def sync(self) -> None:
        """Bring the table and the lines up to date with the state."""
        state = self.state
        key = (state.entries, state.sort, state.reverse, state.text, state.status,
               tuple(state.marks.items()), self.size.width)
        if key != self._table_key:
            self._table_key = key
            self.table.show(state.shown(), state.marks, self.size.width)
        self.query_one(DetailLine).entry = self.current()
        for widget in self.query("#browser-header, #browser-detail, #browser-keybar"):
            widget.sync()

    def on_resize(self) -> None:
        self.call_after_refresh(self.sync)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.query_one(DetailLine).entry = self.current()
        self.query_one(DetailLine).sync()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def current(self) -> Optional[Entry]:
        path = self.table.current()
        return next((e for e in self.state.entries if e.path == path), None)

    def say(self, message: str) -> None:
        """A short message in the key bar (for MESSAGE_S seconds)."""
        self.state.say(printable(message, newlines=False))
        if self._message_timer is not None:
            self._message_timer.stop()
        self._message_timer = self.set_timer(MESSAGE_S, lambda: self.say_nothing())
        self.sync()

    def say_nothing(self) -> None:
        self._message_timer = None
        self.state.say("")
        self.sync()

    # ---- actions
    def action_open(self) -> None:
        from tuiprune.dashboard.app import RunScreen

        e = self.current()
        if e is None:
            return
        if e.pending:
            self.say(f"{e.name} has not started yet: its sweep starts it")
            return
        g = self.state.glyphs
        self.app.push_screen(RunScreen(e.path / EVENTS_FILE, e.path, mode="watch",
                                       ascii_only=g.ascii, back=True))

    def action_mark(self) -> None:
        e = self.current()
        if e is None:
            return
        problem = self.state.toggle_mark(e.path)
        if problem:
            self.say(problem)
            return
        self.sync()
        self.table.action_cursor_down()

    def action_unmark(self) -> None:
        self.state.clear_marks()
        self.sync()

    def action_compare(self) -> None:
        from tuiprune.dashboard.compare.screen import CompareScreen, compared_runs

        marked = self.state.marked()
        if len(marked) < 2:
            self.say(f"mark 2 to {MAX_COMPARED} runs with space first ({len(marked)} marked)")
            return
        runs = compared_runs(marked, [self.state.marks[e.path] for e in marked])
        self.app.push_screen(CompareScreen(runs, self.state.glyphs, self.state.directory))

    def action_next_sort(self) -> None:
        self.state.next_sort()
        self.sync()

    def action_reverse(self) -> None:
        self.state.flip()
        self.sync()

    def action_status_filter(self) -> None:
        self.state.next_status()
        self.sync()

    def action_filter(self) -> None:
        box = self.query_one(Input)
        box.display = True
        box.value = self.state.text
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.state.set_text(event.value)
        self.sync()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one(Input).display = False
        self.table.focus()

    def on_key(self, event) -> None:
        box = self.query_one(Input)
        if event.key == "escape" and box.has_focus:
            event.stop()
            box.value = ""
            box.display = False
            self.table.focus()

    def action_help(self) -> None:
        g = self.state.glyphs
        self.app.push_screen(HelpScreen("", g, text=help_text("Keys: the list of runs",
                                                              BROWSER_KEYS, HELP_NOTE, g)))

    def action_quit(self) -> None:
        self.app.exit()
