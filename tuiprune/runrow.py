"""One run as a row of the run table, read fast (torch-free).

A finished run's log can hold 10k lines and a directory hundreds of runs, so a row never reads
the whole log. :func:`read_row` reads the first line (``run_started``) and then the log
*backwards* from its end, skipping the frequent ``batch``/``lambda``/``system``/``heartbeat``
lines by their prefix without parsing them, until it has passed the last ``state_ended`` and
an ``epoch_ended`` (or reached the start). Those events, folded in log order by
:class:`RowFold`, give every column with the same answers as the whole-log fold
(:mod:`engine.runlog`). :func:`refresh_row` then follows a live run by reading only what was
appended since.

Status: ``run_ended``'s status (``completed``, ``stopped``, ``failed``) when the log ends with
one; else ``live`` while the engine process is alive (``engine.pid``), ``lost`` when it is
gone. A run on another host counts as live while its log moved in the last
:data:`LIVE_WINDOW_S` seconds. ``pending``: a sweep member not started yet.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    import tomli as tomllib

from engine.logread import CHUNK_BYTES, LineSplitter, first_event, parse_line
from engine.pidfile import engine_alive, read_pidfile
from engine.rundir import CONFIG_FILE, ENGINE_LOG, EVENTS_FILE
from engine.schema import Malformed, line_prefix

LIVE_WINDOW_S = 120.0
TAIL_BLOCK = 64 * 1024
HEAD_BYTES = 64 * 1024
# Events a row uses nothing of but their time: never parsed whole
TIME_ONLY = ("batch", "lambda", "system", "heartbeat")
SKIPPED = tuple(line_prefix(k).encode() for k in TIME_ONLY)
STATUSES = ("live", "completed", "stopped", "failed", "lost", "pending")
LOST_MESSAGE = "the engine is gone and the log has no run_ended (killed, or out of memory?)"


class RowFold:
    """The events a row needs, folded in log order; ``offset`` is where the log was read up
    to (the start of its torn tail, if any)."""

    def __init__(self) -> None:
        self.started: Optional[dict] = None
        self.ended: Optional[dict] = None      # run_ended, unless a resume came after it
        self.states_done = 0
        self.best_val_acc: Optional[float] = None
        self._best_state: Optional[int] = None
        self.sparsity: Optional[float] = None  # of the last state (started or ended)
        self.images_per_s: Optional[float] = None
        self.method: Optional[str] = None      # from state_started, if run_started lacks it
        self.last_time: Optional[float] = None
        self.offset = 0

    def add(self, ev: dict) -> None:
        self.last_time = ev["time"]
        kind = ev["event"]
        if kind == "run_started":
            self.started = ev
        elif kind == "resumed":
            self.ended = None
        elif kind == "run_ended":
            self.ended = ev
        elif kind == "state_started":
            self.states_done = max(self.states_done, ev["state"])
            self.sparsity = ev["sparsity"] if ev["sparsity"] is not None else self.sparsity
            self.method = ev["method"] or self.method
        elif kind == "state_ended":
            self.states_done = max(self.states_done, ev["state"] + 1)
            self.sparsity = ev["sparsity"] if ev["sparsity"] is not None else self.sparsity
            if ev["best_val_acc"] is not None:
                self.best_val_acc, self._best_state = ev["best_val_acc"], ev["state"]
        elif kind == "epoch_ended":
            self.images_per_s = ev["images_per_s"]
            val = ev["val_acc"]
            if val is not None:
                same = self._best_state == ev["state"] and self.best_val_acc is not None
                self.best_val_acc = max(self.best_val_acc, val) if same else val
                self._best_state = ev["state"]

    @property
    def final_sparsity(self) -> Optional[float]:
        if self.ended is not None and self.ended["sparsity"] is not None:
            return self.ended["sparsity"]
        return self.sparsity


@dataclass
class RunRow:
    """One run of the table. ``values``: the grid values of a sweep member, or the config keys
    that differ between the listed runs; ``config``: the run's config flattened to
    ``{"section.key": value}``; ``message``: why it stopped, failed or was lost."""

    path: Path
    name: str
    sweep: Optional[str] = None
    values: Dict[str, Any] = field(default_factory=dict)
    status: str = "pending"
    method: Optional[str] = None
    sorting: Optional[str] = None
    criterion: Optional[str] = None
    states_done: int = 0
    states_total: Optional[int] = None
    best_val_acc: Optional[float] = None
    final_sparsity: Optional[float] = None
    images_per_s: Optional[float] = None
    started: Optional[float] = None
    last_event: Optional[float] = None
    message: str = ""
    config: Dict[str, Any] = field(default_factory=dict, repr=False)
    fold: Optional[RowFold] = field(default=None, repr=False, compare=False)
    log_stat: Optional[Tuple[int, int, int]] = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict:
        """The row as JSON-ready data (``tuiprune ls --json``)."""
        return {"name": self.name, "path": str(self.path), "sweep": self.sweep,
                "values": self.values, "status": self.status, "method": self.method,
                "sorting": self.sorting, "criterion": self.criterion,
                "states_done": self.states_done, "states_total": self.states_total,
                "best_val_acc": self.best_val_acc, "final_sparsity": self.final_sparsity,
                "images_per_s": self.images_per_s, "started": self.started,
                "last_event": self.last_event, "message": self.message}


def flatten(cfg: Any) -> Dict[str, Any]:
    """``{"section": {"key": v}}`` as ``{"section.key": v}`` (other shapes: empty)."""
    if not isinstance(cfg, dict):
        return {}
    return {f"{section}.{key}": value for section, table in cfg.items()
            if isinstance(table, dict) for key, value in table.items()}


def read_config(run_dir: Path) -> Dict[str, Any]:
    """``RUN_DIR/config.toml`` flattened; empty when missing or unreadable."""
    try:
        return flatten(tomllib.loads((Path(run_dir) / CONFIG_FILE).read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def read_row(run_dir: Path, sweep: Optional[str] = None,
             values: Optional[Dict[str, Any]] = None) -> RunRow:
    """The row of the run in ``run_dir``, reading the head and the tail of its log."""
    row = RunRow(Path(run_dir), Path(run_dir).name, sweep, dict(values or {}))
    fold = RowFold()
    path = row.path / EVENTS_FILE
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            tail, fold.offset, reached_head = _read_tail(f, st.st_size)
        if not reached_head:
            head, _ = first_event(path, HEAD_BYTES)
            if head is None and st.st_size > HEAD_BYTES:
                head, _ = first_event(path)
            if head is not None and head["event"] == "run_started":
                fold.add(head)
        for ev in tail:
            fold.add(ev)
        row.log_stat = _stat_key(st)
    except OSError:
        pass  # no log yet: the config and the engine's liveness still tell something
    row.fold = fold
    _fill(row)
    return row


def refresh_row(row: RunRow) -> RunRow:
    """Bring ``row`` up to date (in place, and returned): reads only what the log gained since
    the row was read; a replaced or truncated log is read again."""
    path = row.path / EVENTS_FILE
    try:
        st = os.stat(path)
    except OSError:
        st = None
    fold = row.fold
    if fold is None:  # a sweep member that had not started
        if row.path.is_dir():
            row.__dict__.update(read_row(row.path, row.sweep, row.values).__dict__)
        return row
    if st is not None and _stat_key(st) != row.log_stat:
        if row.log_stat is None or st.st_ino != row.log_stat[0] or st.st_size < fold.offset:
            row.__dict__.update(read_row(row.path, row.sweep, row.values).__dict__)
            return row
        read, splitter = 0, LineSplitter(envelope_only=TIME_ONLY)
        try:
            with open(path, "rb") as f:
                f.seek(fold.offset)
                for data in iter(lambda: f.read(CHUNK_BYTES), b""):
                    read += len(data)
                    for ev in splitter.feed(data).events:
                        fold.add(ev)
        except OSError:
            pass
        fold.offset += read - len(splitter.tail)  # a torn tail is read again next time
        row.log_stat = _stat_key(st)
    _fill(row)
    return row


def why(row: RunRow) -> str:
    """Why a run ended as it did: its run_ended message; for a lost run (or one without a
    message) also the last line of its ``engine.log``."""
    if row.message and row.status != "lost":
        return row.message
    from tuiprune.dashboard.liveness import tail_lines  # Textual-free, torch-free

    last = [line for line in tail_lines(row.path / ENGINE_LOG, 5) if line.strip()]
    reason = row.message or "no reason recorded"
    return f"{reason}; {ENGINE_LOG} ends: {last[-1].strip()}" if last else reason


def _stat_key(st: os.stat_result) -> Tuple[int, int, int]:
    """What tells that a log changed: its inode (replaced), size (grew) and mtime."""
    return st.st_ino, st.st_size, st.st_mtime_ns


def _fill(row: RunRow) -> None:
    """The row's columns from its fold, its config and the engine's liveness."""
    fold = row.fold or RowFold()
    started = fold.started
    if started is not None and isinstance(started.get("config"), dict) and not row.config:
        row.config = flatten(started["config"])
    if not row.config:
        row.config = read_config(row.path)
    cfg = row.config
    if started is not None:
        row.method = started["method"] or fold.method or cfg.get("prune.method")
        row.sorting = started["sorting"] or cfg.get("prune.sorting")
        row.criterion = started["criterion"] or cfg.get("prune.criterion")
        row.states_total, row.started = started["states"], started["time"]
    else:
        row.method = fold.method or cfg.get("prune.method")
        row.sorting, row.criterion = cfg.get("prune.sorting"), cfg.get("prune.criterion")
        row.states_total = cfg.get("prune.states")
    row.states_done, row.best_val_acc = fold.states_done, fold.best_val_acc
    row.final_sparsity, row.images_per_s = fold.final_sparsity, fold.images_per_s
    row.last_event = fold.last_time
    row.status, row.message = _status(row.path, fold)


def _status(run_dir: Path, fold: RowFold) -> Tuple[str, str]:
    if fold.ended is not None:
        return str(fold.ended["status"]), fold.ended["message"] or ""
    alive = engine_alive(run_dir)
    if alive:
        return "live", ""
    info = read_pidfile(run_dir)
    if alive is None and info is not None:  # recorded on another host: judge by the log
        recent = fold.last_time is not None and time.time() - fold.last_time < LIVE_WINDOW_S
        host = str(info.get("host"))[:100]
        return ("live", f"on host {host}") if recent else \
            ("lost", f"runs on host {host}; its log has not moved for over "
                     f"{LIVE_WINDOW_S:.0f} s")
    return "lost", LOST_MESSAGE


def _lines_backwards(f, end: int) -> Iterator[bytes]:
    """The complete lines of ``f`` before byte ``end``, last first."""
    pos, carry = end, b""
    while pos > 0:
        start = max(0, pos - TAIL_BLOCK)
        f.seek(start)
        block = f.read(pos - start) + carry
        pos = start
        lines = block.split(b"\n")
        carry = lines.pop(0) if pos > 0 else b""
        for line in reversed(lines):
            yield line
    if carry:
        yield carry


def _end_of_lines(f, size: int) -> int:
    """The offset just past the last ``\\n`` (an unterminated tail is torn, never read)."""
    pos = size
    while pos > 0:
        start = max(0, pos - TAIL_BLOCK)
        f.seek(start)
        nl = f.read(pos - start).rfind(b"\n")
        if nl >= 0:
            return start + nl + 1
        pos = start
    return 0


def _read_tail(f, size: int) -> Tuple[List[dict], int, bool]:
    """The events from the end of the log back to its last ``state_ended`` and an
    ``epoch_ended`` (or to its start), in log order; the offset after the last complete line;
    whether the start was reached."""
    end = _end_of_lines(f, size)
    found: List[dict] = []
    state_ended = epoch_ended = False
    first = True  # the last event is parsed whatever its type: it dates the log
    for line in _lines_backwards(f, end):
        if not first and line.startswith(SKIPPED) or not line.strip():
            continue
        try:
            ev = parse_line(line.decode("utf-8", "replace"))
        except Malformed:
            continue
        if ev is None:
            continue
        found.append(ev)
        first = False
        kind = ev["event"]
        state_ended = state_ended or kind == "state_ended"
        epoch_ended = epoch_ended or kind == "epoch_ended"
        if kind == "run_started" or (state_ended and epoch_ended):
            found.reverse()
            return found, end, kind == "run_started"
    found.reverse()
    return found, end, True
