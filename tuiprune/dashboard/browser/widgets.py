"""The run browser's lines around its table: the header (where, how many, sort and filters),
the highlighted run's details and the key bar. They draw from
:class:`~tuiprune.dashboard.browser.state.BrowserState` and redraw when it changed."""

from __future__ import annotations

from pathlib import Path
from typing import Hashable, List, Optional, Sequence

from rich.text import Text

from tuiprune import format as fmt
from tuiprune.dashboard.browser.entries import Entry
from tuiprune.dashboard.keys import Key, bar_of
from tuiprune.dashboard.widgets.base import ViewWidget, clip, spread
from tuiprune.ls_command import ENDED_BADLY
from tuiprune.palette import RUN_COLOURS, run_letter
from tuiprune.runrow import why


class BrowserHeader(ViewWidget):
    def change_key(self) -> Hashable:
        return self.ctx.version

    def lines(self, width: int, height: int) -> List[Text]:
        state, g = self.ctx, self.ctx.glyphs
        title = Text("tuiprune", style="bold reverse")
        title.append("  runs in ")
        title.append(g.text(fmt.printable(state.directory, newlines=False)), style="bold")
        counts = Text(state.counts() if state.listed else "reading the runs", style="dim")
        how = Text(f"sorted by {state.sort_label()}", no_wrap=True)
        if state.text:
            how.append(f'{g.sep}filter "{g.text(fmt.printable(state.text, newlines=False))}"')
        if state.status is not None:
            how.append(f"{g.sep}only {g.text(fmt.printable(state.status, newlines=False))}")
        shown = len(state.shown()) if (state.text or state.status) else None
        if shown is not None:
            how.append(f"{g.sep}{shown} shown")
        how.append_text(self.marked_text())
        return [spread(title, counts, width, g.ellipsis), clip(how, width, g.ellipsis)]

    def marked_text(self) -> Text:
        marked = self.ctx.marked()
        text = Text()
        if not marked:
            return text
        text.append(f"{self.ctx.glyphs.sep}marked ")
        for e in marked:
            slot = self.ctx.marks[e.path]
            text.append(run_letter(slot), style=f"bold {RUN_COLOURS[slot]}")
        text.append(" (c compares)" if len(marked) >= 2 else " (mark 2 to compare)")
        return text


class DetailLine(ViewWidget):
    """The run under the cursor: where it is, and why it ended badly."""

    def __init__(self, ctx, **kwargs) -> None:
        super().__init__(ctx, **kwargs)
        self.entry: Optional[Entry] = None
        self._why: Optional[tuple] = None  # (entry, why) of the last lookup

    def change_key(self) -> Hashable:
        return self.ctx.version, self.entry

    def reason(self, e: Entry) -> str:
        """``why(row)`` reads engine.log for a lost run: once per change of the entry."""
        if self._why is None or self._why[0] != e:
            self._why = (e, why(e))
        return self._why[1]

    def lines(self, width: int, height: int) -> List[Text]:
        state, g, e = self.ctx, self.ctx.glyphs, self.entry
        if state.problem:
            line = Text(g.text(fmt.printable(state.problem, newlines=False)), style="bold red")
        elif state.listed and not state.entries:
            line = Text(f"no runs in {g.text(fmt.printable(state.directory))} yet: start one "
                        "with tuiprune watch CONFIG or tuiprune sweep CONFIG", style="dim")
        elif e is None:
            line = Text("")
        else:
            line = Text(g.text(fmt.printable(Path(e.path), newlines=False)), style="dim")
            if e.status in ENDED_BADLY:
                line.append(f"{g.sep}{e.status}: ", style="bold")
                line.append(g.text(fmt.printable(self.reason(e), newlines=False)))
            elif e.pending:
                line.append(f"{g.sep}not started yet")
        return [clip(line, width, g.ellipsis)]


class ScreenKeyBar(ViewWidget):
    """The bottom line: a screen's main keys, or a short message after an action."""

    def __init__(self, ctx, table: Sequence[Key], **kwargs) -> None:
        super().__init__(ctx, **kwargs)
        self.table = table

    def change_key(self) -> Hashable:
        return self.ctx.message

    def lines(self, width: int, height: int) -> List[Text]:
        g = self.ctx.glyphs
        if self.ctx.message:
            return [clip(Text(g.text(self.ctx.message), style="bold"), width, g.ellipsis)]
        return [clip(Text(bar_of(self.table, g), style="dim"), width, g.ellipsis)]
