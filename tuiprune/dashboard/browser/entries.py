"""The run browser's rows (no Textual): snapshots of ``tuiprune.runlist`` rows made for display,
their sort orders and filters, and :class:`Lister`, which lists a directory again about once a
second in its own thread and hands on the rows when they changed.

An :class:`Entry` is immutable and holds only text and numbers, so the screen never shares a
row with the thread that refreshes it. Its cells are ``tuiprune ls``'s (:func:`cells`): the
browser and ``ls`` say the same thing the same way.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from engine.errors import UserError
from engine.sweepdir import is_sweep_dir
from tuiprune.ls_command import cells
from tuiprune.runlist import list_runs
from tuiprune.runrow import STATUSES, RunRow

LIST_S = 1.0  # how often the directory is listed again


@dataclass(frozen=True)
class Entry:
    """One run as the browser shows it. ``order``: its place in the run table (oldest first,
    a sweep's members together in the sweep's order)."""

    path: Path
    name: str
    order: int
    status: str
    cells: Dict[str, str]
    started: Optional[float] = None
    best_val_acc: Optional[float] = None
    final_sparsity: Optional[float] = None
    images_per_s: Optional[float] = None
    states_done: int = 0
    message: str = ""
    sweep: Optional[str] = None
    config: Dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def pending(self) -> bool:
        return self.status == "pending"


def entry(row: RunRow, order: int, prefix_sweep: bool) -> Entry:
    return Entry(row.path, row.name, order, row.status, cells(row, prefix_sweep), row.started,
                 row.best_val_acc, row.final_sparsity, row.images_per_s, row.states_done,
                 row.message, row.sweep, dict(row.config))


def _status_rank(e: Entry) -> int:
    return STATUSES.index(e.status) if e.status in STATUSES else len(STATUSES)


@dataclass(frozen=True)
class Sort:
    """A sort order: its name, the value it sorts by (None sorts last) and whether the
    largest comes first unless reversed."""

    name: str
    key: Callable[[Entry], Any]
    descending: bool = False


SORTS: Tuple[Sort, ...] = (
    Sort("started", lambda e: e.order),
    Sort("name", lambda e: e.cells["name"].lower()),
    Sort("status", _status_rank),
    Sort("best val", lambda e: e.best_val_acc, descending=True),
    Sort("sparsity", lambda e: e.final_sparsity, descending=True),
    Sort("img/s", lambda e: e.images_per_s, descending=True),
    Sort("state", lambda e: e.states_done, descending=True),
)
FILTERED = ("name", "values", "method", "sorting", "criterion", "status")


def sort_entries(entries: Sequence[Entry], sort: Sort, reverse: bool = False) -> List[Entry]:
    """``entries`` in ``sort``'s order (``reverse``: the other way round); runs without a value
    last either way, in the run table's order."""
    in_order = sorted(entries, key=lambda e: e.order)
    known = [e for e in in_order if sort.key(e) is not None]
    unknown = [e for e in in_order if sort.key(e) is None]
    known.sort(key=sort.key, reverse=sort.descending != reverse)  # stable: ties keep order
    return known + unknown


def matches(e: Entry, text: str = "", status: Optional[str] = None) -> bool:
    """Whether ``e`` has ``status`` (any when None) and ``text`` in one of its shown cells
    (case-insensitive)."""
    if status is not None and e.status != status:
        return False
    needle = text.lower()
    return not needle or any(needle in e.cells[c].lower() for c in FILTERED)


def entries_of(directory: Path, known: Optional[Dict[Path, RunRow]] = None
               ) -> Tuple[List[Entry], Dict[Path, RunRow]]:
    """The entries of ``directory`` and its rows (pass them back as ``known``: only what
    changed is read again)."""
    rows = list_runs(directory, known)
    prefix = not is_sweep_dir(directory)
    return [entry(r, i, prefix) for i, r in enumerate(rows)], {r.path: r for r in rows}


Deliver = Callable[[List[Entry], str], None]


class Lister(threading.Thread):
    """Lists ``directory`` every :data:`LIST_S` seconds and calls ``deliver(entries, problem)``
    from its thread when the entries changed or a problem came or went (``problem``: why the
    directory cannot be listed now, e.g. it was removed; "" when it can). Paused while the
    browser is hidden; ``poke`` lists at once. Any other exception ends it and goes to
    ``on_error``."""

    def __init__(self, directory: Path, deliver: Deliver,
                 on_error: Callable[[BaseException], None], interval: float = LIST_S) -> None:
        super().__init__(name="tuiprune-lister", daemon=True)
        self.directory = Path(directory)
        self.deliver, self.on_error, self.interval = deliver, on_error, interval
        self.listings = 0  # completed listings (tests wait on it instead of sleeping)
        self._known: Dict[Path, RunRow] = {}
        self._shown: Optional[Tuple[List[Entry], str]] = None
        self._halt = threading.Event()
        self._wake = threading.Event()
        self._running = threading.Event()
        self._running.set()

    def stop(self) -> None:
        self._halt.set()
        self._running.set()
        self._wake.set()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()
        self._wake.set()

    def poke(self) -> None:
        self._wake.set()

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                self._running.wait()
                if self._halt.is_set():
                    return
                self.list_once()
                self._wake.wait(self.interval)
                self._wake.clear()
        except BaseException as exc:  # noqa: BLE001 - reported to the screen, not lost
            if not self._halt.is_set():
                self.on_error(exc)

    def list_once(self) -> None:
        try:
            found, self._known = entries_of(self.directory, self._known)
            problem = ""
        except (UserError, OSError) as exc:
            found, problem = (self._shown[0] if self._shown else []), str(exc)
        self.listings += 1
        if (found, problem) != self._shown:
            self._shown = (found, problem)
            self.deliver(found, problem)
