"""Log pane: warnings, errors (a failed run's traceback), notes; filtered with ``/``."""

from __future__ import annotations

from typing import Hashable, List, Optional

from rich.text import Text
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Input, Static

from tuiprune import format as fmt
from tuiprune.dashboard.context import Context
from tuiprune.dashboard.glyphs import Glyphs
from tuiprune.dashboard.viewmodel import LogEntry
from tuiprune.dashboard.widgets.base import set_title
from tuiprune.dashboard.widgets.scrolling import SCROLL_BINDINGS

LEVEL = {"info": ("info ", "dim"), "warning": ("WARN ", "bold yellow"),
         "error": ("ERROR", "bold red")}


def entry_text(entry: LogEntry, g: Glyphs) -> Text:
    label, style = LEVEL.get(entry.level, (entry.level.upper()[:5], ""))
    text = Text(f"{fmt.clock(entry.time)} ", style="dim")
    text.append(label, style=style)
    if entry.where:
        text.append(f" {entry.where}", style="dim")
    first, _, rest = g.text(entry.text).partition("\n")
    text.append(f" {first}", style="red" if entry.level == "error" else "")
    if rest:
        text.append("\n" + rest, style="red" if entry.level == "error" else "")
    return text


def malformed_text(count: int) -> str:
    """``3 malformed lines skipped``."""
    return f"{fmt.plural(count, 'malformed line')} skipped"


class LogView(VerticalScroll, inherit_bindings=False):
    BINDINGS = SCROLL_BINDINGS


class LogPane(Vertical):
    """The entries of the view model's log that match the filter, newest last."""

    def __init__(self, ctx: Context, **kwargs) -> None:
        super().__init__(**kwargs)
        self.ctx = ctx
        self.filter = ""
        self._shown: Optional[tuple] = None
        self.redraws = 0  # how often its body was rebuilt (tests, the cost benchmark)
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

    def change_key(self) -> Hashable:
        return self.ctx.view.changes.log, self.filter

    def title(self) -> Text:
        view, g = self.ctx.view, self.ctx.glyphs
        parts = [fmt.plural(view.warnings, "warning"), fmt.plural(view.errors, "error")]
        if view.malformed:
            parts.append(malformed_text(view.malformed))
        if self.filter:
            parts.append(f'filter "{g.text(fmt.printable(self.filter, newlines=False))}"')
        return Text("Log" + g.sep + g.sep.join(parts))

    def sync(self, force: bool = False, urgent: bool = False) -> bool:
        key = self.change_key()
        if not force and key == self._shown:
            return False
        self._shown = key
        self.redraws += 1
        set_title(self, self.title(), self.ctx.glyphs.ellipsis)
        scroller = self.query_one(LogView)
        following = scroller.scroll_offset.y >= scroller.max_scroll_y - 1
        self.body.update(Text("\n").join(self.body_lines()))
        if following:
            self.show_newest()
        return True

    def body_lines(self) -> List[Text]:
        """The malformed-line count, then the entries that match the filter."""
        view, g = self.ctx.view, self.ctx.glyphs
        lines: List[Text] = []
        if view.malformed:
            first = f" (first: {view.problems[0]})" if view.problems else ""
            lines.append(Text(f"{malformed_text(view.malformed)} from the event log{first}",
                              style="yellow"))
        lines += [entry_text(e, g) for e in self.matching()]
        if not lines:
            lines.append(Text("nothing matches" if self.filter else "nothing logged yet",
                              style="dim"))
        return lines

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
