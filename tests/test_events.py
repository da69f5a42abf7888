"""The event log writer (torch-free); the reader's tests are in test_logread.py."""

from __future__ import annotations

import json
import math

from engine.events import SCHEMA_VERSION, EventLog, Throttle, iter_events


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


def test_throttle_lets_one_through_per_interval():
    t = Throttle(interval=60)
    assert t.ready() and not t.ready() and not t.ready()
