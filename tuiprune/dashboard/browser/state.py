"""What the run browser shows and what the user did with it (no Textual): the listed runs, the
sort order and filters, the runs marked for comparing and a short message after a key.

Marks: a marked run takes the lowest free place 0–5; that place gives it its letter and
colour (``tuiprune.palette``) in the list and on the compare screen.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from tuiprune.dashboard.browser.entries import SORTS, Entry, matches, sort_entries
from tuiprune.dashboard.glyphs import UNICODE, Glyphs
from tuiprune.runrow import STATUSES

MAX_COMPARED = 6


@dataclass
class BrowserState:
    directory: Path
    glyphs: Glyphs = UNICODE
    entries: List[Entry] = field(default_factory=list)  # as listed
    problem: str = ""  # why the directory cannot be listed now
    listed: bool = False  # a first listing arrived
    sort: int = 0  # index into SORTS
    reverse: bool = False
    text: str = ""  # the text filter
    status: Optional[str] = None  # show only this status
    marks: Dict[Path, int] = field(default_factory=dict)  # run -> its place (letter, colour)
    message: str = ""
    version: int = 0  # bumped on every change (the widgets' change key)

    def changed(self) -> None:
        self.version += 1

    # ---- the rows
    def set_entries(self, entries: List[Entry], problem: str) -> None:
        self.entries, self.problem, self.listed = entries, problem, True
        paths = {e.path for e in entries}
        self.marks = {p: slot for p, slot in self.marks.items() if p in paths}
        self.changed()

    def shown(self) -> List[Entry]:
        """The entries that pass the filters, in the chosen order."""
        kept = [e for e in self.entries if matches(e, self.text, self.status)]
        return sort_entries(kept, SORTS[self.sort], self.reverse)

    def counts(self) -> str:
        """``5 runs: 3 completed, 1 failed, 1 lost``."""
        counts = Counter(e.status for e in self.entries)
        order = [s for s in STATUSES if counts[s]] + sorted(set(counts) - set(STATUSES))
        n = len(self.entries)
        return f"{n} run{'s' if n != 1 else ''}" + (": " if counts else "") + \
            ", ".join(f"{counts[s]} {s}" for s in order)

    # ---- sorting and filtering
    def next_sort(self) -> None:
        self.sort, self.reverse = (self.sort + 1) % len(SORTS), False
        self.changed()

    def flip(self) -> None:
        self.reverse = not self.reverse
        self.changed()

    def sort_label(self) -> str:
        sort, g = SORTS[self.sort], self.glyphs
        down = sort.descending != self.reverse
        arrow = ("v" if down else "^") if g.ascii else ("↓" if down else "↑")
        return f"{sort.name} {arrow}"

    def set_text(self, text: str) -> None:
        self.text = text
        self.changed()

    def next_status(self) -> None:
        """Cycle: every status, then each one present in the list in turn."""
        present = [s for s in STATUSES if any(e.status == s for e in self.entries)]
        present += sorted({e.status for e in self.entries} - set(STATUSES))
        cycle: List[Optional[str]] = [None, *present]
        at = cycle.index(self.status) if self.status in cycle else 0
        self.status = cycle[(at + 1) % len(cycle)]
        self.changed()

    # ---- marks
    def toggle_mark(self, path: Path) -> Optional[str]:
        """Mark or unmark ``path``; a message when it cannot be marked."""
        if path in self.marks:
            del self.marks[path]
        elif len(self.marks) >= MAX_COMPARED:
            return f"at most {MAX_COMPARED} runs can be compared: unmark one first (space)"
        else:
            self.marks[path] = min(set(range(MAX_COMPARED)) - set(self.marks.values()))
        self.changed()
        return None

    def clear_marks(self) -> None:
        self.marks = {}
        self.changed()

    def marked(self) -> List[Entry]:
        """The marked runs, by their place."""
        by_path = {e.path: e for e in self.entries}
        return [by_path[p] for p, _ in sorted(self.marks.items(), key=lambda kv: kv[1])
                if p in by_path]

    def say(self, message: str) -> None:
        self.message = message
        self.changed()
