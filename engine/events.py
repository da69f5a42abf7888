"""Writing the append-only event log (``RUN_DIR/events.jsonl``; fields in ``engine/schema.py``,
prose in ``docs/events.md``). Torch-free; reading is ``engine.logread``.

``emit`` never waits for the disk: it numbers the event (``seq``), encodes it, hands the line
to a writer thread and calls the listeners, in order, before it returns. The writer thread
appends whatever lines are waiting with one ``write`` on an ``O_APPEND`` descriptor as soon as
it gets them (well within a second), and only whole lines: if the filesystem fails mid-write
(disk full), the partial line is cut off again, and the failure (:class:`WriteFailed`) is
raised to the caller by the next ``emit``, by :meth:`EventLog.flush` or by
:meth:`EventLog.close`. ``run_ended`` is written before its ``emit`` returns, so a failure to
write it is raised there. ``close`` (also at interpreter exit) waits until every line is
written. No fsync: a killed process loses at most the lines still queued (moments' worth); a
power cut may lose the last lines, never tear earlier ones.
"""

from __future__ import annotations

import atexit
import errno
import json
import math
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Callable, List, Optional

from engine import schema
from engine.errors import WriteFailed

SYNC_EVENTS = frozenset({"run_ended"})  # written before emit returns: nothing follows them
_OPEN: "weakref.WeakSet[EventLog]" = weakref.WeakSet()


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
    """Appends events to ``path`` from a writer thread; ``listeners`` see every event, in
    order, as it is emitted.

    A listener that fails with an ``OSError`` (say, the terminal or ``engine.log`` is gone) is
    dropped; the log itself goes on."""

    def __init__(self, path: Path, seq: int = 0,
                 listeners: Optional[List[Callable[[dict], None]]] = None,
                 heartbeat_seconds: float = 0.0):
        self.path = Path(path)
        self.seq = seq
        self.listeners = list(listeners or [])
        # a `heartbeat` line when nothing was written for this long (0: never), with these
        # fields (the run keeps them current: its state and what it is busy with)
        self.heartbeat_seconds = heartbeat_seconds
        self.heartbeat_fields: dict = {}
        self._last_line = time.monotonic()
        try:
            self._fd: Optional[int] = os.open(self.path, os.O_WRONLY | os.O_APPEND
                                              | os.O_CREAT, 0o644)
        except OSError as exc:
            raise WriteFailed(self.path, exc) from None
        self._cond = threading.Condition()
        self._queue: List[bytes] = []
        self._queued = self._done = 0      # lines handed to the writer / written or failed
        self._error: Optional[WriteFailed] = None  # a failure not yet raised to the caller
        self._closing = False
        self._writer = threading.Thread(target=self._write_loop, daemon=True,
                                        name=f"events:{self.path.name}")
        self._writer.start()
        _OPEN.add(self)

    def emit(self, event: str, **fields) -> dict:
        """Log one event; returns it as it is written. Raises :class:`WriteFailed` when an
        earlier line could not be written (the event itself is queued and seen by the
        listeners all the same)."""
        obj = self._enqueue(event, fields)
        for listener in list(self.listeners):
            try:
                listener(obj)
            except OSError:
                self.listeners.remove(listener)
        if event in SYNC_EVENTS:
            self.flush()
        else:
            self._raise_error()
        return obj

    def _enqueue(self, event: str, fields: dict) -> dict:
        """Number the event and queue its line (under the lock: the writer thread numbers
        heartbeats too)."""
        obj = _clean({"v": schema.SCHEMA_VERSION, "event": event, "time": time.time(),
                      "seq": 0, **schema.build(event, fields)})
        with self._cond:
            if self._closing:
                raise ValueError(f"event log {self.path} is closed")
            obj["seq"] = self.seq
            self._queue.append((json.dumps(obj, separators=(",", ":"), allow_nan=False)
                                + "\n").encode())
            self._queued += 1
            self.seq += 1
            self._last_line = time.monotonic()
            self._cond.notify_all()
        return obj

    def flush(self) -> None:
        """Wait until every line emitted so far is in the file; raise a write failure."""
        with self._cond:
            target = self._queued
            self._cond.wait_for(lambda: self._done >= target or not self._writer.is_alive())
        self._raise_error()

    def close(self) -> None:
        """Write what is queued, stop the writer and close the file. Raises a write failure
        that no ``emit``/``flush`` has raised yet."""
        with self._cond:
            if self._fd is None:
                return
            self._closing = True
            self._cond.notify_all()
        self._writer.join()
        with self._cond:
            os.close(self._fd)
            self._fd = None
        _OPEN.discard(self)
        self._raise_error()

    # ------------------------------------------------------------------ the writer thread
    def _raise_error(self) -> None:
        with self._cond:
            error, self._error = self._error, None
        if error is not None:
            raise error

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closing,
                                    timeout=self.heartbeat_seconds or None)
                if not self._queue and not self._closing:
                    self._cond.release()  # _enqueue takes the lock itself
                    try:
                        self._heartbeat()
                    finally:
                        self._cond.acquire()
                    continue
                if not self._queue:
                    return
                lines, self._queue = self._queue, []
            try:
                self._append(lines)
            except WriteFailed as exc:
                self._fail(exc)
            except Exception as exc:  # noqa: BLE001 - a writer that dies would hang flush
                self._fail(WriteFailed(self.path, OSError(errno.EIO, repr(exc))))
            with self._cond:
                self._done += len(lines)
                self._cond.notify_all()

    def _heartbeat(self) -> None:
        """A ``heartbeat`` when nothing was written for ``heartbeat_seconds`` (not seen by the
        listeners: they belong to the thread that emits)."""
        if time.monotonic() - self._last_line >= self.heartbeat_seconds:
            try:
                self._enqueue("heartbeat", dict(self.heartbeat_fields))
            except Exception:  # noqa: BLE001 - closing, or bad fields: a heartbeat is optional,
                pass           # and the writer thread must live on to write the real lines

    def _fail(self, exc: WriteFailed) -> None:
        with self._cond:
            self._error = self._error or exc

    def _append(self, lines: List[bytes]) -> None:
        """Append ``lines`` with one write (more only if the disk takes part); on a failure,
        cut the file back to the end of the last whole line and raise WriteFailed."""
        data = b"".join(lines)
        size = written = 0
        try:
            size = os.fstat(self._fd).st_size
            while written < len(data):  # a short write: only when the disk is (nearly) full
                written += os.write(self._fd, data[written:])
        except OSError as exc:
            whole = 0
            for line in lines:
                if whole + len(line) > written:
                    break
                whole += len(line)
            try:
                os.ftruncate(self._fd, size + whole)  # no torn line of ours stays behind
            except OSError:
                pass
            raise WriteFailed(self.path, exc) from None


def _forget_all() -> None:
    """In a forked child (a DataLoader worker): the parent's logs are not ours to write."""
    _OPEN.clear()


os.register_at_fork(after_in_child=_forget_all)


@atexit.register
def _close_all() -> None:
    """At interpreter exit, write every open log's queued lines (the thread is a daemon)."""
    for log in list(_OPEN):
        try:
            log.close()
        except (WriteFailed, ValueError):
            pass


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
