"""Writing the append-only event log (``RUN_DIR/events.jsonl``; fields in ``engine/schema.py``,
prose in ``docs/events.md``). Torch-free; reading is ``engine.logread``.

Each event is one compact JSON line written with a single ``write`` on an ``O_APPEND``
descriptor, so a line reaches the file whole or not at all: if the filesystem fails mid-line
(disk full), the partial line is cut off again before the error is raised, and the log never
holds a torn line of this process. No fsync: a killed process loses nothing the OS has; a
power cut may lose the last lines, never tear earlier ones.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Callable, List, Optional

from engine import schema
from engine.errors import WriteFailed


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
    """Appends events to ``path``; ``listeners`` see every event as it is written.

    A listener that fails with an ``OSError`` (say, the terminal or ``engine.log`` is gone) is
    dropped; the log itself goes on."""

    def __init__(self, path: Path, seq: int = 0,
                 listeners: Optional[List[Callable[[dict], None]]] = None):
        self.path = Path(path)
        self.seq = seq
        self.listeners = list(listeners or [])
        try:
            self._fd: Optional[int] = os.open(self.path, os.O_WRONLY | os.O_APPEND
                                              | os.O_CREAT, 0o644)
        except OSError as exc:
            raise WriteFailed(self.path, exc) from None

    def emit(self, event: str, **fields) -> dict:
        obj = _clean({"v": schema.SCHEMA_VERSION, "event": event, "time": time.time(),
                      "seq": self.seq, **schema.build(event, fields)})
        self._append((json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n")
                     .encode("utf-8"))
        self.seq += 1
        for listener in list(self.listeners):
            try:
                listener(obj)
            except OSError:
                self.listeners.remove(listener)
        return obj

    def _append(self, data: bytes) -> None:
        if self._fd is None:
            raise ValueError(f"event log {self.path} is closed")
        size = os.fstat(self._fd).st_size
        try:
            written = os.write(self._fd, data)
            while written < len(data):  # a short write: only when the disk is (nearly) full
                written += os.write(self._fd, data[written:])
        except OSError as exc:
            try:
                os.ftruncate(self._fd, size)  # no torn line of ours stays behind
            except OSError:
                pass
            raise WriteFailed(self.path, exc) from None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


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
