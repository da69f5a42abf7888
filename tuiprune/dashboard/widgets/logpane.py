"""Log pane: warnings, errors (a failed run's traceback), notes; filtered with ``/``."""

from __future__ import annotations

import time
from typing import List, Optional

from rich.text import Text
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Input, Static

from tuiprune.dashboard.context import Context
from tuiprune.dashboard.glyphs import Glyphs
from tuiprune.dashboard.viewmodel import LogEntry
from tuiprune.dashboard.widgets.base import set_title
from tuiprune.dashboard.widgets.scrolling import SCROLL_BINDINGS

LEVEL = {"info": ("info ", "dim"), "warning": ("WARN ", "bold yellow"),
         "error": ("ERROR", "bold red")}


def entry_text(entry: LogEntry, g: Glyphs) -> Text:
    label, style = LEVEL.get(entry.level, (entry.level.upper()[:5], ""))
    stamp = time.strftime("%H:%M:%S", time.localtime(entry.time)) if entry.time else "--:--:--"
    text = Text(f"{stamp} ", style="dim")
    text.append(label, style=style)
    if entry.where:
        text.append(f" {entry.where}", style="dim")
    first, _, rest = g.text(entry.text).partition("\n")
    text.append(f" {first}", style="red" if entry.level == "error" else "")
    if rest:
        text.append("\n" + rest, style="red" if entry.level == "error" else "")
    return text


class LogView(VerticalScroll, inherit_bindings=False):
    BINDINGS = SCROLL_BINDINGS


class LogPane(Vertical):
    """The entries of the view model's log that match the filter, newest last."""

    def __init__(self, ctx: Context, **kwargs) -> None:
        super().__init__(**kwargs)
        self.ctx = ctx
        self.filter = ""
        self._shown: Optional[tuple] = None
        self.body = Static("", id="log-body")
        self.input = Input(placeholder="filter the log: Enter keeps it, Esc clears it",
                           id="log-filter")

    def compose(self):
        yield self.input
        with LogView(id="log-view"):
            yield self.body

    def on_mount(self) -> None:
        self.input.display = False

    def matching(self) -> List[LogEntry]:
        needle = self.filter.lower()
        entries = list(self.ctx.view.log)
        if needle:
            entries = [e for e in entries if needle in e.text.lower()
                       or needle in e.level or needle in e.where]
        return entries

    def sync(self) -> None:
        view, g = self.ctx.view, self.ctx.glyphs
        parts = [f"{view.warnings} warning{'s' * (view.warnings != 1)}",
                 f"{view.errors} error{'s' * (view.errors != 1)}"]
        if view.bad_lines:
            parts.append(f"{view.bad_lines} unparseable line{'s' * (view.bad_lines != 1)}")
        if self.filter:
            parts.append(f'filter "{g.text(self.filter)}"')
        set_title(self, "Log" + g.sep + g.sep.join(parts), g.ellipsis)
        last = view.log[-1] if view.log else None
        key = (id(view), len(view.log), id(last), view.bad_lines, self.filter)
        if key == self._shown:
            return
        self._shown = key
        lines: List[Text] = []
        if view.bad_lines:
            lines.append(Text(f"skipped {view.bad_lines} unparseable line"
                              f"{'s' * (view.bad_lines != 1)} of the event log", style="yellow"))
        lines += [entry_text(e, g) for e in self.matching()]
        if not lines:
            lines.append(Text("nothing matches" if self.filter else "nothing logged yet",
                              style="dim"))
        scroller = self.query_one(LogView)
        following = scroller.scroll_offset.y >= scroller.max_scroll_y - 1
        self.body.update(Text("\n").join(lines))
        if following:
            self.show_newest()

    def show_newest(self) -> None:
        """Scroll to the newest entries once the new content is laid out."""
        scroller = self.query_one(LogView)
        scroller.call_after_refresh(scroller.scroll_end, animate=False)

    # ---- filter
    def open_filter(self) -> None:
        self.input.display = True
        self.input.value = self.filter
        self.input.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.filter = event.value
        self.sync()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.input.display = False
        self.query_one(LogView).focus()

    def on_key(self, event) -> None:
        if event.key == "escape" and self.input.has_focus:
            event.stop()
            self.input.value = ""
            self.filter = ""
            self.input.display = False
            self.query_one(LogView).focus()
            self.sync()
