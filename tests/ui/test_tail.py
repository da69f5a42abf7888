"""tuiprune.tail.Tailer: following a file that grows, tears, is replaced or breaks."""

from __future__ import annotations

import os
import threading
import time

import pytest

from helpers import synthlog
from tuiprune.tail import Tailer


def event(seq: int, kind: str = "warning") -> dict:
    return {"v": 1, "event": kind, "time": 1.0, "seq": seq, "message": f"m{seq}"}


class Sink:
    """Collects what a tailer delivers and the errors it reports."""

    def __init__(self):
        self.chunks, self.errors = [], []
        self.lock = threading.Lock()

    def __call__(self, chunk):
        with self.lock:
            self.chunks.append(chunk)

    def failed(self, exc):
        with self.lock:
            self.errors.append(exc)

    def seqs(self):
        with self.lock:
            return [e["seq"] for c in self.chunks for e in c.events]

    def wait(self, predicate, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(self.chunks):
                    return
            time.sleep(0.01)
        raise AssertionError(f"the tailer did not deliver; got {self.chunks} {self.errors}")


@pytest.fixture
def tail():
    started = []

    def start(path, interval=0.05):
        sink = Sink()
        tailer = Tailer(path, sink, sink.failed, interval=interval)
        tailer.start()
        started.append(tailer)
        return tailer, sink

    yield start
    for tailer in started:
        tailer.stop()
        tailer.join(2)


def wait_polls(tailer, more: int = 2, timeout: float = 5.0) -> None:
    """Wait until the tailer has looked at the file ``more`` more times."""
    target = tailer.polls + more
    deadline = time.monotonic() + timeout
    while tailer.polls < target:
        assert time.monotonic() < deadline, "the tailer stopped polling"
        time.sleep(0.005)


def test_tailer_follows_appends_and_a_line_written_in_two_parts(tmp_path, tail):
    path = tmp_path / "events.jsonl"
    tailer, sink = tail(path)  # the file does not exist yet
    wait_polls(tailer)
    assert sink.chunks == []
    with open(path, "a") as f:
        f.write(synthlog.line(event(0)))
        f.flush()
        sink.wait(lambda cs: any(c.caught_up for c in cs))
        f.write('{"v":1,"event":"warning","time":1.0,"seq":1,')
        f.flush()
        wait_polls(tailer)  # it looked at the torn half (twice) and waits
        assert sink.seqs() == [0]
        f.write('"message":"m"}\n')
        f.flush()
    # no poke: the periodic re-check must find it
    sink.wait(lambda cs: len([e for c in cs for e in c.events]) == 2)
    assert sink.seqs() == [0, 1]
    assert sum(c.malformed for c in sink.chunks) == 0 and not any(c.torn for c in sink.chunks)
    assert tailer.consumed == path.stat().st_size


def test_tailer_starts_over_when_the_file_is_replaced_or_truncated(tmp_path, tail):
    path = synthlog.write(tmp_path / "events.jsonl", [event(i) for i in range(3)])
    tailer, sink = tail(path)
    sink.wait(lambda cs: any(c.caught_up for c in cs))
    new = synthlog.write(tmp_path / "new.jsonl", [event(9)])
    os.replace(new, path)
    sink.wait(lambda cs: any(c.reset for c in cs) and 9 in [e["seq"] for c in cs
                                                            for e in c.events])
    resets = [i for i, c in enumerate(sink.chunks) if c.reset]
    assert [e["seq"] for c in sink.chunks[resets[-1]:] for e in c.events] == [9]
    with open(path, "w") as f:  # truncate in place, then a shorter content
        f.write(synthlog.line(event(5)))
    sink.wait(lambda cs: len([c for c in cs if c.reset]) == 2 and 5 in [
        e["seq"] for c in cs for e in c.events])


def test_tailer_reports_a_torn_tail_once_the_writer_is_gone(tmp_path, tail):
    path = tmp_path / "events.jsonl"
    path.write_text(synthlog.line(event(0)) + '{"v":1,"eve')
    tailer, sink = tail(path)
    sink.wait(lambda cs: any(c.caught_up for c in cs))
    wait_polls(tailer)
    assert not any(c.torn for c in sink.chunks)  # the writer may still finish the line
    tailer.writer_gone()
    sink.wait(lambda cs: any(c.torn for c in cs))
    wait_polls(tailer)
    assert sum(c.torn for c in sink.chunks) == 1 and sum(c.malformed for c in sink.chunks) == 0


def test_an_exception_in_the_tailer_thread_reaches_its_owner(tmp_path, tail):
    path = synthlog.write(tmp_path / "events.jsonl", [event(0)])
    tailer, sink = tail(path)
    sink.wait(lambda cs: any(c.caught_up for c in cs))
    path.unlink()
    path.mkdir()  # the log is now a directory: reopening it fails
    tailer.join(5)
    assert not tailer.is_alive()
    assert len(sink.errors) == 1 and isinstance(sink.errors[0], IsADirectoryError)
