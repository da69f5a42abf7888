"""Writing (and, for resume, reading) the append-only event log; see ``docs/events.md``.

Torch-free. Each event is one JSON line, flushed as soon as it is written (no fsync: a killed
process loses nothing the OS has; a power cut may lose the last lines, never tear earlier ones).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional

SCHEMA_VERSION = 1
EVENTS_FILE = "events.jsonl"


def _clean(obj):
    """JSON-safe copy: non-finite floats become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


class EventLog:
    """Appends events to ``path``; ``listeners`` see every event as it is written."""

    def __init__(self, path: Path, seq: int = 0,
                 listeners: Optional[List[Callable[[dict], None]]] = None):
        self.path = Path(path)
        self.seq = seq
        self.listeners = list(listeners or [])
        self._file = open(self.path, "a", encoding="utf-8")

    def emit(self, event: str, **fields) -> dict:
        obj = _clean({"v": SCHEMA_VERSION, "event": event, "time": time.time(),
                      "seq": self.seq, **fields})
        self._file.write(json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n")
        self._file.flush()
        self.seq += 1
        for listener in self.listeners:
            listener(obj)
        return obj

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


class Throttle:
    """``ready()`` is true at most once per ``interval`` seconds."""

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self._next = 0.0

    def ready(self) -> bool:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.interval
            return True
        return False


def iter_events(path: Path) -> Iterator[dict]:
    """Every complete, parseable event of a log; torn or garbage lines are skipped."""
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                return  # torn last line: the writer died mid-line
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            if isinstance(obj, dict) and "event" in obj:
                yield obj


def truncate_torn_tail(path: Path) -> int:
    """Cut a torn last line back to the last newline (before appending on resume).

    Returns the number of bytes removed."""
    size = os.path.getsize(path)
    if size == 0:
        return 0
    with open(path, "rb+") as f:
        pos = size
        chunk = 4096
        while pos > 0:
            start = max(0, pos - chunk)
            f.seek(start)
            data = f.read(pos - start)
            if start + len(data) == size and data.endswith(b"\n"):
                return 0
            nl = data.rfind(b"\n")
            if nl >= 0:
                keep = start + nl + 1
                f.truncate(keep)
                return size - keep
            pos = start
        f.truncate(0)
        return size
