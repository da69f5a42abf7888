"""Reading ``RUN_DIR/events.jsonl`` (schema in ``docs/events.md``) without torch.

- :class:`LineSplitter` turns raw bytes into events: complete lines are parsed, lines that do
  not parse are skipped and counted, an unterminated last line waits for more bytes.
- :func:`iter_batches` reads a whole log once (replay); :class:`Tailer` follows a growing
  log from a worker thread (watch), in the manner of Textualize's ``toolong``: it reads new
  bytes from the last offset, re-checks on a timer even when nothing signalled a change, and
  starts over when the file is replaced, truncated or rewritten (its first bytes change).

Both hand events on in :class:`Batch` es so the UI pays per batch, not per line.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

from engine.rundir import EVENTS_FILE as LOG_NAME  # noqa: F401  (re-exported)
from engine.schema import SCHEMA_VERSION  # noqa: F401  (re-exported)

CHUNK_BYTES = 1 << 20
MAX_BATCH_EVENTS = 4000
HEAD_BYTES = 256

_decode = json.JSONDecoder().raw_decode


@dataclass
class Batch:
    """Events read in one go. ``reset``: the file was replaced or truncated, so everything
    delivered before is void. ``caught_up``: the reader has reached the end of the file."""

    events: List[dict] = field(default_factory=list)
    bad_lines: int = 0
    reset: bool = False
    caught_up: bool = False


def parse_line(line: str) -> Optional[dict]:
    """The event on one line, or None when it is not a JSON object."""
    try:
        obj, end = _decode(line)
    except ValueError:
        return None
    if end != len(line) and line[end:].strip():
        return None
    return obj if isinstance(obj, dict) else None


# The engine writes compact JSON with ``v`` and ``event`` first (engine/events.py). A line with
# this exact start is a ``batch`` event; any other spelling is simply parsed in full.
BATCH_PREFIX = '{"v":1,"event":"batch",'


def parse_text(text: str, skip_superseded: bool = False) -> Tuple[List[dict], int]:
    """Events of complete lines in ``text``, and how many non-blank lines did not parse.

    ``skip_superseded``: leave out ``batch`` lines followed by an ``epoch_started`` line in
    the same text. Those cannot change what a viewer shows once the whole text is applied
    (a new epoch resets the batch progress), and skipping them halves the cost of catching
    up on a long log. Only lines in the engine's own spelling (:data:`BATCH_PREFIX`) are
    recognised without parsing; the rest are always parsed.
    """
    events: List[dict] = []
    bad = 0
    append = events.append
    lines = text.split("\n")
    superseded = False
    if skip_superseded:
        lines.reverse()
    for line in lines:
        if superseded and line.startswith(BATCH_PREFIX):
            continue
        try:
            obj, end = _decode(line)
        except ValueError:
            if line.strip():
                bad += 1
            continue
        if type(obj) is dict and (end == len(line) or not line[end:].strip()):
            append(obj)
            if skip_superseded and obj.get("event") == "epoch_started":
                superseded = True
        else:
            bad += 1
    if skip_superseded:
        events.reverse()
    return events, bad


class LineSplitter:
    """Feeds bytes, returns the events of the lines completed so far; keeps the torn rest."""

    def __init__(self, skip_superseded: bool = False) -> None:
        self.tail = b""
        self.skip_superseded = skip_superseded

    def feed(self, data: bytes) -> Tuple[List[dict], int]:
        data = self.tail + data if self.tail else data
        cut = data.rfind(b"\n")
        if cut < 0:
            self.tail = data
            return [], 0
        self.tail = data[cut + 1:]
        return parse_text(data[:cut].decode("utf-8", "replace"), self.skip_superseded)

    def flush(self) -> Tuple[List[dict], int]:
        """The writer is gone: the unterminated rest is an event if it parses, else one bad
        line (a torn write)."""
        rest, self.tail = self.tail, b""
        if not rest.strip():
            return [], 0
        event = parse_line(rest.decode("utf-8", "replace"))
        return ([event], 0) if event is not None else ([], 1)


def _split(events: List[dict], size: int) -> Iterator[List[dict]]:
    for start in range(0, len(events), size):
        yield events[start:start + size]


def iter_batches(path: Path, max_events: int = MAX_BATCH_EVENTS,
                 skip: Callable[[], bool] = lambda: False) -> Iterator[Batch]:
    """Every event of the log at ``path`` as it is now, in batches; the last one is
    ``caught_up`` and includes a torn last line (counted as bad). ``skip()`` says, before
    each chunk, whether superseded batch lines may be left out (see :func:`parse_text`)."""
    splitter = LineSplitter()
    with open(path, "rb") as f:
        while True:
            data = f.read(CHUNK_BYTES)
            if not data:
                break
            splitter.skip_superseded = skip()
            events, bad = splitter.feed(data)
            for part in _split(events, max_events):
                yield Batch(part, bad)
                bad = 0
            if bad:
                yield Batch([], bad)
    events, bad = splitter.flush()
    yield Batch(events, bad, caught_up=True)


class Tailer(threading.Thread):
    """Follows a growing log from a daemon thread and calls ``deliver(batch)`` from it.

    ``deliver`` may block (the app applies the batch meanwhile): that is the back-pressure
    that keeps a huge log from piling up in memory. The file may not exist yet.
    """

    def __init__(self, path: Path, deliver: Callable[[Batch], None], interval: float = 0.25,
                 max_events: int = MAX_BATCH_EVENTS) -> None:
        super().__init__(name="tuiprune-tailer", daemon=True)
        self.path = Path(path)
        self.deliver = deliver
        self.interval = interval
        self.max_events = max_events
        self.consumed = 0  # bytes read and delivered, torn tail included
        self.caught_up = False
        self._splitter = LineSplitter(skip_superseded=True)
        self._file = None
        self._identity: Optional[Tuple[int, int]] = None
        self._head = b""  # the file's first bytes: a rewrite in place changes them
        self._halt = threading.Event()
        self._wake = threading.Event()
        self._flush = threading.Event()

    # control, from any thread
    def stop(self) -> None:
        self._halt.set()
        self._wake.set()

    def poke(self) -> None:
        """Re-check now instead of at the next tick."""
        self._wake.set()

    def flush_torn_tail(self) -> None:
        """The writer is gone: at the end of the file, deliver what an unterminated last line
        amounts to (an event, or one bad line)."""
        self._flush.set()
        self._wake.set()

    @property
    def torn_bytes(self) -> int:
        return len(self._splitter.tail)

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                if not self._poll():
                    self._wake.wait(self.interval)
                    self._wake.clear()
        finally:
            if self._file is not None:
                self._file.close()

    def _poll(self) -> bool:
        """Read what is new; True when there may be more to read at once."""
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        identity = (st.st_dev, st.st_ino)
        if (self._file is None or identity != self._identity or st.st_size < self.consumed
                or self._head != os.pread(self._file.fileno(), len(self._head), 0)):
            self._reopen(identity, first=self._file is None)
        data = self._file.read(CHUNK_BYTES) if st.st_size > self.consumed else b""
        if not data:
            if self._flush.is_set():
                self._flush.clear()
                events, bad = self._splitter.flush()
                if events or bad:
                    self.deliver(Batch(events, bad, caught_up=True))
            if not self.caught_up:
                self.caught_up = True
                self.deliver(Batch(caught_up=True))
            return False
        if len(self._head) < HEAD_BYTES:
            self._head = (self._head + data)[:HEAD_BYTES]
        events, bad = self._splitter.feed(data)
        at_end = self.consumed + len(data) >= st.st_size
        parts = list(_split(events, self.max_events)) or [[]]
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if last:
                self.consumed += len(data)
                self.caught_up = at_end
            self.deliver(Batch(part, bad if i == 0 else 0, caught_up=last and at_end))
        return not at_end

    def _reopen(self, identity: Tuple[int, int], first: bool) -> None:
        if self._file is not None:
            self._file.close()
        self._file = open(self.path, "rb")
        self._identity = identity
        self._head = b""
        self._splitter = LineSplitter(skip_superseded=True)
        self.consumed = 0
        self.caught_up = False
        if not first:
            self.deliver(Batch(reset=True))
