"""Following a growing event log from a worker thread (torch-free, no Textual).

:class:`Tailer` works in the manner of Textualize's ``toolong`` watcher: a thread reads new
bytes from the last offset, re-checks on a timer even when nothing signalled a change, starts
over when the file is replaced, truncated or rewritten (its first bytes change), and hands
what it read to its owner through callbacks: ``deliver(chunk)`` for events and
``on_error(exc)`` when it cannot go on, so a failure is shown, never swallowed. Lines become
events through :class:`engine.logread.LineSplitter`, the one reader of the log (torn-line
rule, validation, malformed-line counts). :class:`ReaderThread`, the error-reporting part, is
shared with the replay player (``tuiprune.dashboard.player``).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable, Optional, Tuple

from engine.logread import CHUNK_BYTES, MAX_CHUNK_EVENTS, Chunk, LineSplitter, chunks_of

HEAD_BYTES = 256
POLL_S = 0.25

Deliver = Callable[[Chunk], None]
OnError = Callable[[BaseException], None]


class ReaderThread(threading.Thread):
    """A daemon thread that reads the log at ``path`` and calls ``deliver(chunk)`` (which may
    block: that is the back-pressure that keeps a huge log from piling up in memory). Any
    exception ends it and goes to ``on_error``, unless it was stopped."""

    def __init__(self, name: str, path: Path, deliver: Deliver, on_error: OnError,
                 max_events: int = MAX_CHUNK_EVENTS) -> None:
        super().__init__(name=name, daemon=True)
        self.path = Path(path)
        self.deliver = deliver
        self.on_error = on_error
        self.max_events = max_events

    def run(self) -> None:
        try:
            self.read()
        except BaseException as exc:  # noqa: BLE001 - reported to the owner, not lost
            if not self.stopped():
                self.on_error(exc)

    def read(self) -> None:
        raise NotImplementedError

    def stopped(self) -> bool:
        raise NotImplementedError


class Tailer(ReaderThread):
    """Follows the log at ``path`` (which may not exist yet) as it grows.

    Superseded ``batch`` lines are skipped when a backlog is read
    (``engine.logread.parse_text``)."""

    def __init__(self, path: Path, deliver: Deliver, on_error: OnError,
                 interval: float = POLL_S, max_events: int = MAX_CHUNK_EVENTS) -> None:
        super().__init__("tuiprune-tailer", path, deliver, on_error, max_events)
        self.interval = interval
        self.consumed = 0  # bytes read and delivered, torn tail included
        self.caught_up = False
        self.polls = 0  # completed looks at the file (tests wait on it instead of sleeping)
        self._splitter = LineSplitter(skip_superseded=True)
        self._file = None
        self._identity: Optional[Tuple[int, int]] = None
        self._head = b""  # the file's first bytes: a rewrite in place changes them
        self._halt = threading.Event()
        self._wake = threading.Event()
        self._writer_gone = threading.Event()
        self._torn_reported = False

    # ---- control, from any thread
    def stop(self) -> None:
        self._halt.set()
        self._wake.set()

    def poke(self) -> None:
        """Re-check now instead of at the next tick."""
        self._wake.set()

    def writer_gone(self) -> None:
        """The writer is gone: once at the end of the file, report an unterminated last line
        as torn (it will never be completed) and look again at once."""
        self._writer_gone.set()
        self._wake.set()

    def stopped(self) -> bool:
        return self._halt.is_set()

    # ---- the thread
    def read(self) -> None:
        try:
            while not self._halt.is_set():
                more = self._poll()
                self.polls += 1
                if not more:
                    self._wake.wait(self.interval)
                    self._wake.clear()
        finally:
            if self._file is not None:
                self._file.close()

    def _poll(self) -> bool:
        """Read what is new; True when there may be more to read at once."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        identity = (st.st_dev, st.st_ino)
        if (self._file is None or identity != self._identity or st.st_size < self.consumed
                or self._head != os.pread(self._file.fileno(), len(self._head), 0)):
            self._reopen(identity, first=self._file is None)
        data = self._file.read(CHUNK_BYTES) if st.st_size > self.consumed else b""
        if not data:
            self._at_end()
            return False
        if len(self._head) < HEAD_BYTES:
            self._head = (self._head + data)[:HEAD_BYTES]
        parsed = self._splitter.feed(data)
        at_end = self.consumed + len(data) >= st.st_size
        for chunk in chunks_of(parsed, self.max_events, caught_up=at_end):
            self.deliver(chunk)
        # counted once delivered, so "read to the end" never runs ahead of what was applied
        self.consumed += len(data)
        self.caught_up = at_end
        return not at_end

    def _at_end(self) -> None:
        """At the end of the file: say so once, and report a torn tail once the writer is
        known to be gone."""
        torn = (self._writer_gone.is_set() and not self._torn_reported
                and self._splitter.torn())
        if torn or not self.caught_up:
            self._torn_reported |= torn
            self.caught_up = True
            self.deliver(Chunk(torn=torn, caught_up=True))

    def _reopen(self, identity: Tuple[int, int], first: bool) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._file = open(self.path, "rb")
        self._identity = identity
        self._head = b""
        self._splitter = LineSplitter(skip_superseded=True)
        self.consumed = 0
        self.caught_up = False
        self._torn_reported = False
        if not first:
            self.deliver(Chunk(reset=True))
