"""The event log writer and the engine's tolerant reader (torch-free)."""

from __future__ import annotations

import json
import math

from engine.events import SCHEMA_VERSION, EventLog, Throttle, iter_events, truncate_torn_tail


def test_events_are_flushed_lines_with_common_fields(tmp_path):
    path = tmp_path / "events.jsonl"
    seen = []
    log = EventLog(path, seq=5, listeners=[seen.append])
    log.emit("batch", state=0, loss=float("nan"), acc=math.inf, nested={"x": [float("-inf")]})
    # visible to another reader before close: flushed per line
    line = path.read_text()
    assert line.endswith("\n") and line.count("\n") == 1
    ev = json.loads(line)
    assert ev["v"] == SCHEMA_VERSION and ev["event"] == "batch" and ev["seq"] == 5
    assert ev["loss"] is None and ev["acc"] is None and ev["nested"] == {"x": [None]}
    assert seen == [ev]
    log.emit("warning", message="x")
    log.close()
    assert [e["seq"] for e in iter_events(path)] == [5, 6]


def test_reader_skips_garbage_and_a_torn_last_line(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"v":1,"event":"a","seq":0}\nnot json\n[1,2]\n{"v":1,"event":"b","seq":1}\n'
                    '{"v":1,"event":"c","se')
    assert [e["event"] for e in iter_events(path)] == ["a", "b"]


def test_truncate_torn_tail(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"event":"a"}\n{"event":"b"}\n{"event":"c"')
    assert truncate_torn_tail(path) == len('{"event":"c"')
    assert path.read_text() == '{"event":"a"}\n{"event":"b"}\n'
    assert truncate_torn_tail(path) == 0
    path.write_text('{"event":"only-torn"')
    assert truncate_torn_tail(path) > 0 and path.read_text() == ""
    long_tail = '{"event":"a"}\n' + "x" * 10000
    path.write_text(long_tail)
    truncate_torn_tail(path)
    assert path.read_text() == '{"event":"a"}\n'


def test_throttle_lets_one_through_per_interval():
    t = Throttle(interval=60)
    assert t.ready() and not t.ready() and not t.ready()
