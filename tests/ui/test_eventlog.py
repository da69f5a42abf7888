"""Reading the event log: torn lines, garbage, and following a file that grows or is replaced."""

from __future__ import annotations

import os
import threading
import time

import synthlog
from tuiprune.dashboard.reducer import Reducer
from tuiprune.eventlog import (Batch, LineSplitter, Tailer, iter_batches, parse_line,
                               parse_text)


def test_parse_line_accepts_objects_only():
    assert parse_line('{"event":"x","v":1}') == {"event": "x", "v": 1}
    assert parse_line('{"event":"x"}  \r') == {"event": "x"}
    assert parse_line("[1, 2]") is None
    assert parse_line('{"event":"x"} trailing') is None
    assert parse_line('{"event":"x"') is None


def test_parse_text_counts_bad_lines_and_ignores_blank_ones():
    events, bad = parse_text('{"a":1}\nnot json\n\n   \n{"b":2}\n[3]\n{"c":')
    assert events == [{"a": 1}, {"b": 2}]
    assert bad == 3


def test_splitter_keeps_a_torn_line_until_its_end_arrives():
    line = synthlog.line({"v": 1, "event": "warning", "message": "é ünïcode"}).encode()
    cut = len(line) - 5  # inside the line, maybe inside a multi-byte character
    s = LineSplitter()
    assert s.feed(line[:cut]) == ([], 0)
    events, bad = s.feed(line[cut:] + b'{"v":1,"event":"error"')
    assert [e["event"] for e in events] == ["warning"] and events[0]["message"] == "é ünïcode"
    assert bad == 0
    assert s.tail == b'{"v":1,"event":"error"'
    assert s.flush() == ([], 1)  # the writer died mid-line: one bad line


def test_splitter_flush_accepts_a_complete_object_without_newline():
    s = LineSplitter()
    s.feed(b'{"v":1,"event":"run_ended","status":"completed"}')
    assert s.flush() == ([{"v": 1, "event": "run_ended", "status": "completed"}], 0)


def test_iter_batches_reads_everything_and_counts_the_torn_tail(tmp_path):
    evs = list(synthlog.events("refill", states=2, epochs=1, batches=5))
    path = synthlog.write(tmp_path / "events.jsonl", evs, extra='garbage\n{"v":1,"ev')
    batches = list(iter_batches(path, max_events=7))
    got = [e for b in batches for e in b.events]
    assert got == evs
    assert sum(b.bad_lines for b in batches) == 2
    assert batches[-1].caught_up and not any(b.caught_up for b in batches[:-1])
    assert all(len(b.events) <= 7 for b in batches)


def test_skipping_superseded_batch_lines_changes_nothing_a_viewer_shows(tmp_path):
    evs = list(synthlog.events("rsst", states=3, epochs=2, batches=30))
    path = synthlog.write(tmp_path / "events.jsonl", evs)
    full, fast = Reducer(), Reducer()
    for b in iter_batches(path):
        full.apply_batch(b)
    kept = 0
    for b in iter_batches(path, skip=lambda: True):
        fast.apply_batch(b)
        kept += len(b.events)
    assert kept < len(evs) - 100  # most batch lines were never parsed
    a, b = full.view, fast.view
    assert [s.points for s in a.states] == [s.points for s in b.states]
    assert [s.lambdas.snapshot() for s in a.states] == [s.lambdas.snapshot() for s in b.states]
    assert a.progress.loss.snapshot() == b.progress.loss.snapshot()
    assert (a.progress.batch, a.progress.epoch, a.last_time, a.status) == \
        (b.progress.batch, b.progress.epoch, b.last_time, b.status)


def test_skipping_only_applies_to_the_engines_spelling():
    spaced = '{"v": 1, "event": "batch", "state": 0, "epoch": 0, "batch": 3}'
    compact = '{"v":1,"event":"batch","state":0,"epoch":0,"batch":4}'
    text = "\n".join([spaced, compact, '{"v":1,"event":"epoch_started","state":0,"epoch":1}'])
    events, bad = parse_text(text, skip_superseded=True)
    assert [e.get("batch") for e in events] == [3, None]
    assert bad == 0


class Collector:
    def __init__(self):
        self.batches = []
        self.lock = threading.Lock()

    def __call__(self, batch: Batch):
        with self.lock:
            self.batches.append(batch)

    def events(self):
        with self.lock:
            return [e for b in self.batches for e in b.events]

    def wait(self, predicate, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(self.batches):
                    return True
            time.sleep(0.02)
        raise AssertionError(f"tailer did not deliver; got {self.batches}")


def _tail(path, interval=0.05):
    sink = Collector()
    tailer = Tailer(path, sink, interval=interval)
    tailer.start()
    return tailer, sink


def test_tailer_follows_appends_and_a_line_written_in_two_parts(tmp_path):
    path = tmp_path / "events.jsonl"
    tailer, sink = _tail(path)  # the file does not exist yet
    try:
        time.sleep(0.15)
        assert sink.batches == []
        with open(path, "a") as f:
            f.write(synthlog.line({"v": 1, "event": "run_started", "seq": 0}))
            f.flush()
            sink.wait(lambda bs: any(b.caught_up for b in bs))
            f.write('{"v":1,"event":"warning","seq":1,')
            f.flush()
            time.sleep(0.2)  # several polls see the torn half and wait
            assert [e["seq"] for e in sink.events()] == [0]
            f.write('"message":"m"}\n')
            f.flush()
        # no poke: the periodic re-check must find it
        sink.wait(lambda bs: len([e for b in bs for e in b.events]) == 2)
        assert [e["seq"] for e in sink.events()] == [0, 1]
        assert sum(b.bad_lines for b in sink.batches) == 0
        assert tailer.consumed == path.stat().st_size
    finally:
        tailer.stop()
        tailer.join(2)


def test_tailer_starts_over_when_the_file_is_replaced_or_truncated(tmp_path):
    path = synthlog.write(tmp_path / "events.jsonl",
                          [{"v": 1, "event": "run_started", "seq": i} for i in range(3)])
    tailer, sink = _tail(path)
    try:
        sink.wait(lambda bs: any(b.caught_up for b in bs))
        new = synthlog.write(tmp_path / "new.jsonl", [{"v": 1, "event": "x", "seq": 9}])
        os.replace(new, path)
        sink.wait(lambda bs: any(b.reset for b in bs) and any(
            e.get("seq") == 9 for b in bs for e in b.events))
        resets = [i for i, b in enumerate(sink.batches) if b.reset]
        assert [e["seq"] for b in sink.batches[resets[-1]:] for e in b.events] == [9]
        with open(path, "w") as f:  # truncate in place, then a shorter content
            f.write(synthlog.line({"v": 1, "event": "y", "seq": 5}))
        sink.wait(lambda bs: len([b for b in bs if b.reset]) == 2 and any(
            e.get("seq") == 5 for b in bs for e in b.events))
    finally:
        tailer.stop()
        tailer.join(2)


def test_tailer_flushes_a_torn_tail_on_request(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(synthlog.line({"v": 1, "event": "a"}) + '{"v":1,"eve')
    tailer, sink = _tail(path)
    try:
        sink.wait(lambda bs: any(b.caught_up for b in bs))
        assert sum(b.bad_lines for b in sink.batches) == 0
        tailer.flush_torn_tail()
        sink.wait(lambda bs: sum(b.bad_lines for b in bs) == 1)
    finally:
        tailer.stop()
        tailer.join(2)
