"""The one reader of ``RUN_DIR/events.jsonl`` (torch-free): every viewer and the resume scan
read the log through it.

Rules, the same for everyone:

- **Lines.** An event is a ``\\n``-terminated line. An unterminated last line is *torn*: the
  writer is writing it now, or died mid-line. A live reader waits for the rest; a reader of a
  finished file reports it as torn and never parses it.
- **Events.** Each line is parsed as JSON and checked by :func:`engine.schema.validate`. A
  line that is not a JSON object, nests too deep, is longer than :data:`MAX_LINE_BYTES`, or
  holds an event that does not fit the schema is *malformed*: skipped and counted, with the
  first few reasons kept for display. Events of unknown types are dropped silently (a newer
  writer may add types).

:class:`LineSplitter` turns bytes into :class:`Chunk` s of events; :func:`iter_chunks` reads a
whole file (replay, report), :func:`iter_events` flattens that (resume scan, summaries) and
``tuiprune.tail.Tailer`` follows a growing file with the same splitter.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

try:
    import orjson
except ImportError:  # pragma: no cover - a dependency; json alone is correct, only slower
    orjson = None

from engine.schema import SCHEMA_VERSION, Malformed, Seq, Time, line_prefix, validate

CHUNK_BYTES = 1 << 20
MAX_CHUNK_EVENTS = 4000
MAX_LINE_BYTES = 4 << 20
MAX_PROBLEMS = 5  # reasons kept per chunk

_decode = json.JSONDecoder().raw_decode
BATCH_PREFIX = line_prefix("batch")  # how the writer spells the most frequent event


@dataclass
class Chunk:
    """Events read in one go.

    ``malformed``: lines skipped as malformed, with up to :data:`MAX_PROBLEMS` reasons in
    ``problems``. ``torn``: the file ends in an unterminated line (set only once the reader
    has been told that the writer is gone, or reads a file as it is). ``reset``: the file was
    replaced or truncated, so everything delivered before is void. ``caught_up``: the reader
    has reached the end of the file."""

    events: List[dict] = field(default_factory=list)
    malformed: int = 0
    problems: List[str] = field(default_factory=list)
    torn: bool = False
    reset: bool = False
    caught_up: bool = False


def parse_line(line: str) -> Optional[dict]:
    """The validated event on one line (without its newline); None for an event type the
    schema does not know. Raises :class:`engine.schema.Malformed` for anything else.

    Lines are decoded with ``orjson`` (4x faster) when it is installed; a line it refuses
    is decoded again with ``json``, so what is accepted and every reason given are
    ``json``'s (NaN and lone surrogates included); an integer beyond 64 bits, which no
    field allows, reads as a float."""
    if orjson is not None:
        try:
            return validate(orjson.loads(line))
        except orjson.JSONDecodeError:
            pass
    try:
        obj, end = _decode(line)
    except RecursionError:
        raise Malformed("JSON nested too deeply") from None
    except ValueError as exc:
        raise Malformed(f"not JSON ({exc.msg})" if hasattr(exc, "msg") else "not JSON") from None
    if end != len(line) and line[end:].strip():
        raise Malformed("text after the JSON object")
    return validate(obj)


class _Parsed:
    """Accumulates the events and problems of a run of lines."""

    __slots__ = ("events", "malformed", "problems")

    def __init__(self) -> None:
        self.events: List[dict] = []
        self.malformed = 0
        self.problems: List[str] = []

    def bad(self, reason: str) -> None:
        self.malformed += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(reason)


def envelope(line: str, prefix: str, kind: str) -> Optional[dict]:
    """Only the envelope (``v``, ``event``, ``time``, ``seq``) of a line in the writer's own
    spelling of ``kind`` (it starts with ``prefix``), read without parsing the rest; None
    when the line is spelled otherwise (then it is parsed whole)."""
    if not line.endswith("}") or not line.startswith('"time":', len(prefix)):
        return None
    at = line.find(',"seq":', len(prefix) + 7)
    end = line.find(",", at + 7) if at > 0 else -1
    if end < 0:
        return None
    try:
        time_, seq = float(line[len(prefix) + 7:at]), int(line[at + 7:end])
    except ValueError:
        return None
    if not (math.isfinite(time_) and _TIME.lo <= time_ <= _TIME.hi and
            _SEQ.lo <= seq <= _SEQ.hi):
        return None
    return {"v": SCHEMA_VERSION, "event": kind, "time": time_, "seq": seq}


_TIME, _SEQ = Time.__metadata__[0], Seq.__metadata__[0]  # their Range bounds


def parse_text(text: str, skip_superseded: bool = False,
               envelope_only: Tuple[str, ...] = ()) -> _Parsed:
    """Events of the complete lines in ``text`` (no torn tail in it).

    ``skip_superseded``: leave out ``batch`` lines followed by an ``epoch_started`` line in
    the same text. Those cannot change what a viewer shows once the whole text is applied (a
    new epoch resets the batch progress), and skipping them halves the cost of catching up on
    a long log. Only lines in the writer's own spelling (:data:`BATCH_PREFIX`) are recognised
    without parsing; the rest are always parsed.

    ``envelope_only``: event types whose lines in the writer's spelling are read as their
    envelope only (:func:`envelope`), for a reader that uses nothing else of them (the
    whole-log fold of ``engine.runlog`` and its ``batch`` lines): their payload is not
    parsed nor checked.
    """
    out = _Parsed()
    append = out.events.append
    light = [(line_prefix(kind), kind) for kind in envelope_only]
    lines = text.split("\n")
    superseded = False
    if skip_superseded:
        lines.reverse()
    for line in lines:
        if superseded and line.startswith(BATCH_PREFIX):
            continue
        if not line.strip():
            continue
        if light:
            ev = None
            for prefix, kind in light:
                if line.startswith(prefix):
                    ev = envelope(line, prefix, kind)
                    break
            if ev is not None:
                append(ev)
                continue
        if len(line) > MAX_LINE_BYTES:
            out.bad(f"a line of {len(line):,} characters (limit {MAX_LINE_BYTES:,})")
            continue
        try:
            ev = parse_line(line)
        except Malformed as exc:
            out.bad(str(exc))
            continue
        if ev is None:
            continue
        append(ev)
        if skip_superseded and ev["event"] == "epoch_started":
            superseded = True
    if skip_superseded:
        out.events.reverse()
        out.problems.reverse()
    return out


class LineSplitter:
    """Feed it bytes; it returns the events of the lines completed so far and keeps the
    unterminated rest (bounded: a line longer than :data:`MAX_LINE_BYTES` is dropped as
    malformed without being held in memory)."""

    def __init__(self, skip_superseded: bool = False,
                 envelope_only: Tuple[str, ...] = ()) -> None:
        self.tail = b""
        self.skip_superseded = skip_superseded
        self.envelope_only = envelope_only
        self._overlong = False  # inside a line that is being dropped

    def feed(self, data: bytes) -> _Parsed:
        extra = _Parsed()
        if self._overlong:
            cut = data.find(b"\n")
            if cut < 0:
                return extra
            data, self._overlong = data[cut + 1:], False
        data = self.tail + data if self.tail else data
        cut = data.rfind(b"\n")
        if cut < 0:
            self.tail = data
            if len(self.tail) > MAX_LINE_BYTES:
                self.tail, self._overlong = b"", True
                extra.bad(f"a line longer than {MAX_LINE_BYTES:,} bytes")
            return extra
        self.tail = data[cut + 1:]
        parsed = parse_text(data[:cut].decode("utf-8", "replace"), self.skip_superseded,
                            self.envelope_only)
        parsed.malformed += extra.malformed
        parsed.problems = (extra.problems + parsed.problems)[:MAX_PROBLEMS]
        return parsed

    def torn(self) -> bool:
        """Whether an unterminated line is held (or being dropped)."""
        return bool(self.tail.strip()) or self._overlong


def _split(events: List[dict], size: int) -> Iterator[List[dict]]:
    for start in range(0, len(events), size):
        yield events[start:start + size]


def chunks_of(parsed: _Parsed, max_events: int, **flags) -> Iterator[Chunk]:
    """``parsed`` as chunks of at most ``max_events`` events; the problems go with the first
    and ``flags`` (caught_up, torn) with the last."""
    parts = list(_split(parsed.events, max_events)) or [[]]
    for i, part in enumerate(parts):
        first, last = i == 0, i == len(parts) - 1
        yield Chunk(part, parsed.malformed if first else 0, parsed.problems if first else [],
                    **(flags if last else {}))


def iter_chunks(path: Path, max_events: int = MAX_CHUNK_EVENTS,
                skip: Callable[[], bool] = lambda: False,
                envelope_only: Tuple[str, ...] = ()) -> Iterator[Chunk]:
    """Every event of the log at ``path`` as it is now, in chunks; the last one is
    ``caught_up`` and says whether the file ends torn. ``skip()`` says, before each read,
    whether superseded batch lines may be left out; ``envelope_only``: see
    :func:`parse_text`."""
    splitter = LineSplitter(envelope_only=envelope_only)
    with open(path, "rb") as f:
        while True:
            data = f.read(CHUNK_BYTES)
            if not data:
                break
            splitter.skip_superseded = skip()
            parsed = splitter.feed(data)
            if parsed.events or parsed.malformed:
                yield from chunks_of(parsed, max_events)
    yield Chunk(torn=splitter.torn(), caught_up=True)


@dataclass
class ReadStats:
    """What :func:`iter_events` skipped."""

    malformed: int = 0
    problems: List[str] = field(default_factory=list)
    torn: bool = False

    def add(self, chunk: Chunk) -> None:
        self.malformed += chunk.malformed
        self.problems.extend(chunk.problems[:MAX_PROBLEMS - len(self.problems)])
        self.torn = self.torn or chunk.torn


def iter_events(path: Path, stats: Optional[ReadStats] = None) -> Iterator[dict]:
    """Every valid event of the log at ``path``, in file order (``stats`` collects what was
    skipped)."""
    for chunk in iter_chunks(path):
        if stats is not None:
            stats.add(chunk)
        yield from chunk.events


def truncate_torn_tail(path: Path) -> int:
    """Cut a torn last line back to the last newline (before appending on resume).

    Returns the number of bytes removed."""
    size = os.path.getsize(path)
    if size == 0:
        return 0
    with open(path, "rb+") as f:
        pos = size
        while pos > 0:
            start = max(0, pos - 4096)
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


def first_event(path: Path, max_bytes: int = 1 << 20) -> Tuple[Optional[dict], str]:
    """The first line of a log as an event, or (None, why not)."""
    with open(path, "rb") as f:
        head = f.read(max_bytes)
    line, nl, _ = head.partition(b"\n")
    if not nl:
        return None, "its first line is incomplete or longer than a megabyte"
    try:
        ev = parse_line(line.decode("utf-8", "replace"))
    except Malformed as exc:
        return None, f"its first line is not an event ({exc})"
    return (ev, "") if ev is not None else (None, "its first line is an unknown event type")


def tail_events(path: Path, max_bytes: int = 1 << 20) -> List[dict]:
    """The valid events among the last ``max_bytes`` of the log (its last lines, without
    reading a long log whole); the first, probably cut, line of that window is dropped."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - max_bytes))
        data = f.read()
    if size > max_bytes:
        data = data[data.find(b"\n") + 1:]
    end = data.rfind(b"\n")
    return parse_text(data[:end].decode("utf-8", "replace")).events if end >= 0 else []
