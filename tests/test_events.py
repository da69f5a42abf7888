"""The event log writer (torch-free); the reader's tests are in test_logread.py."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.events import EventLog, Throttle
from engine.logread import iter_events
from engine.schema import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parent.parent


def test_events_are_flushed_lines_with_common_fields(tmp_path):
    path = tmp_path / "events.jsonl"
    seen = []
    log = EventLog(path, seq=5, listeners=[seen.append])
    log.emit("batch", state=0, epoch=0, batch=3, loss=float("nan"), acc=math.inf)
    # visible to another reader before close: flushed per line
    line = path.read_text()
    assert line.endswith("\n") and line.count("\n") == 1
    ev = json.loads(line)
    assert ev["v"] == SCHEMA_VERSION and ev["event"] == "batch" and ev["seq"] == 5
    assert ev["loss"] is None and ev["acc"] is None
    assert seen == [ev]
    log.emit("run_started", config={"train": {"lr": [4, float("-inf")]}})
    log.emit("warning", message="x")
    log.close()
    evs = list(iter_events(path))
    assert [e["seq"] for e in evs] == [5, 6, 7]
    assert evs[1]["config"] == {"train": {"lr": [4, None]}}


def test_a_field_the_schema_does_not_declare_is_a_programming_error(tmp_path):
    log = EventLog(tmp_path / "events.jsonl")
    with pytest.raises(KeyError, match="renamed_field"):
        log.emit("epoch_ended", state=0, epoch=0, renamed_field=1.0)
    with pytest.raises(KeyError, match="no_such_event"):
        log.emit("no_such_event")
    assert (tmp_path / "events.jsonl").read_text() == ""


def test_a_line_that_does_not_fit_on_disk_is_cut_off_again(tmp_path):
    """A filesystem that accepts only part of a line (here a file-size limit, as a full disk
    would) leaves no torn line: the part is removed and WriteFailed names the file."""
    script = textwrap.dedent(f"""
        import resource, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from engine.events import EventLog
        from engine.errors import WriteFailed
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        log = EventLog({str(tmp_path / "events.jsonl")!r})
        log.emit("warning", message="first")
        resource.setrlimit(resource.RLIMIT_FSIZE, (120, 120))
        try:
            log.emit("warning", message="x" * 200)
        except WriteFailed as exc:
            print("WriteFailed:", exc)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert "WriteFailed:" in out.stdout and "events.jsonl" in out.stdout, out
    lines = (tmp_path / "events.jsonl").read_text().split("\n")
    assert lines[-1] == "" and len(lines) == 2 and json.loads(lines[0])["message"] == "first"


def test_throttle_lets_one_through_per_interval():
    t = Throttle(interval=60)
    assert t.ready() and not t.ready() and not t.ready()
