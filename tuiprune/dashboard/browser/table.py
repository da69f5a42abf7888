"""The run browser's table: the shown entries as rows of a Textual ``DataTable`` that keeps
the cursor on the same run while the list changes under it.

Every cell is a Rich ``Text`` (a string cell would be read as markup: a ``[`` in a run name
must stay a character), cut to its column with the glyph set's ellipsis, so ``--ascii``
draws nothing but ASCII. Columns that do not fit the width are left out as ``tuiprune ls`` leaves
them out (``DROP_ORDER``, the values narrowed first); a long name keeps a sweep member's own
name whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from rich.text import Text
from textual.widgets import DataTable

from tuiprune.dashboard.browser.entries import Entry
from tuiprune.dashboard.glyphs import Glyphs
from tuiprune.dashboard.widgets.base import clip
from tuiprune.ls_command import COLUMNS, DROP_ORDER, RIGHT, STATUS_STYLE, VALUES_MIN
from tuiprune.palette import RUN_COLOURS, run_letter

MARK = "mark"
CAPS = {"name": 40, "values": 34}  # the widest these columns get
NAME_MIN = 12
PADDING = 2  # DataTable's cell padding, both sides
SCROLLBAR = 2


def clip_left(text: str, width: int, ellipsis: str) -> str:
    """``text`` cut to ``width`` cells from the left (its end is kept)."""
    if len(text) <= width:
        return text
    keep = max(0, width - len(ellipsis))
    return ellipsis[:width] + (text[-keep:] if keep else "")


def short_name(name: str, width: int, ellipsis: str) -> str:
    """A run's name cut to ``width``: ``sweep/member`` loses the end of the sweep's name
    first (``demo-sweep…/rsst_global``), anything else its start."""
    sweep, slash, member = name.rpartition("/")
    room = width - len(member) - len(slash) - len(ellipsis)
    if len(name) <= width or not slash or room < 4:
        return clip_left(name, width, ellipsis)
    return sweep[:room] + ellipsis + slash + member


def column_widths(entries: Sequence[Entry]) -> Dict[str, int]:
    widths = {c: max([len(c)] + [len(e.cells[c]) for e in entries]) for c in COLUMNS}
    return {c: min(w, CAPS.get(c, w)) for c, w in widths.items()}


def fit_columns(widths: Dict[str, int], width: int) -> Tuple[List[str], Dict[str, int]]:
    """The columns that fit ``width`` cells (the mark column first) and their widths, as
    ``tuiprune ls`` fits its table: the values column narrows to ``VALUES_MIN`` before columns
    are left out in ``DROP_ORDER``; then the values take the room left, and a name too long
    for what remains is narrowed."""
    frame = 1 + PADDING + SCROLLBAR  # the mark column, the scrollbar
    widths = dict(widths)
    values = widths["values"]
    widths["values"] = min(values, VALUES_MIN)
    shown = list(COLUMNS)

    def need() -> int:
        return sum(widths[c] + PADDING for c in shown) + frame

    for col in DROP_ORDER:
        if need() <= width:
            break
        shown.remove(col)
    if "values" in shown:
        widths["values"] = min(values, widths["values"] + max(0, width - need()))
    if need() > width:
        widths["name"] = max(NAME_MIN, widths["name"] - (need() - width))
    return [MARK, *shown], widths


class RunTable(DataTable):
    """One row per shown run, keyed by its path."""

    def __init__(self, g: Glyphs, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self.g = g
        self.paths: List[Path] = []
        self._columns: List[str] = []
        self._widths: Dict[str, int] = {}
        self._rows: Dict[Path, List[Text]] = {}

    def current(self) -> Optional[Path]:
        """The run under the cursor."""
        if not self.paths:
            return None
        return self.paths[min(max(self.cursor_row, 0), len(self.paths) - 1)]

    def show(self, entries: List[Entry], marks: Dict[Path, int], width: int) -> None:
        """Show ``entries`` in this order; the cursor stays on its run when that is still
        shown."""
        columns, widths = fit_columns(column_widths(entries), width)
        rows = {e.path: self.cells(e, columns, widths, marks.get(e.path)) for e in entries}
        paths = [e.path for e in entries]
        keep, at = self.current(), self.cursor_row
        if (columns, widths) != (self._columns, self._widths):
            self._set_columns(columns, widths)
        elif paths == self.paths:
            self._update(rows)
            return
        self._replace(paths, rows, keep, at)

    def _set_columns(self, columns: List[str], widths: Dict[str, int]) -> None:
        self.clear(columns=True)
        self.paths, self._rows = [], {}
        self._columns, self._widths = columns, widths
        for col in columns:
            label = "" if col == MARK else col
            justify = "right" if col in RIGHT else "left"
            self.add_column(Text(label, justify=justify), key=col,
                            width=1 if col == MARK else widths[col])

    def _update(self, rows: Dict[Path, List[Text]]) -> None:
        for path, cells in rows.items():
            old = self._rows.get(path)
            for col, cell, was in zip(self._columns, cells, old or [None] * len(cells)):
                if cell != was:
                    self.update_cell(str(path), col, cell)
        self._rows = rows

    def _replace(self, paths: List[Path], rows: Dict[Path, List[Text]], keep: Optional[Path],
                 at: int) -> None:
        self.clear()
        for path in paths:
            self.add_row(*rows[path], key=str(path))
        self.paths, self._rows = paths, rows
        if paths:
            row = paths.index(keep) if keep in paths else min(max(at, 0), len(paths) - 1)
            self.move_cursor(row=row)

    def cells(self, e: Entry, columns: List[str], widths: Dict[str, int],
              mark: Optional[int]) -> List[Text]:
        g, out = self.g, []
        for col in columns:
            if col == MARK:
                out.append(Text(run_letter(mark), style=f"bold {RUN_COLOURS[mark]}")
                           if mark is not None else Text(" "))
                continue
            value = g.text(e.cells[col])
            if col == "name":
                value = short_name(value, widths[col], g.ellipsis)
            style = STATUS_STYLE.get(e.status, "") if col == "status" else ""
            text = clip(Text(value, style=style, no_wrap=True), widths[col], g.ellipsis)
            text.justify = "right" if col in RIGHT else "left"
            out.append(text)
        return out
