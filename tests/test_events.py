"""The event log writer (torch-free); the reader's tests are in test_logread.py."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
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
    # visible to another reader before close, within a second, without a flush
    deadline = time.monotonic() + 1.0
    while not path.read_text() and time.monotonic() < deadline:
        time.sleep(0.005)
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
        log.emit("warning", message="x" * 200)  # queued: the writer thread meets the limit
        try:
            log.flush()
        except WriteFailed as exc:
            print("WriteFailed:", exc)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert "WriteFailed:" in out.stdout and "events.jsonl" in out.stdout, out
    lines = (tmp_path / "events.jsonl").read_text().split("\n")
    assert lines[-1] == "" and len(lines) == 2 and json.loads(lines[0])["message"] == "first"


def _run_script(body: str, tmp_path: Path) -> subprocess.CompletedProcess:
    script = f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n" + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)


def test_a_write_failure_cuts_back_to_the_last_whole_line_and_is_raised_later(tmp_path):
    """Lines the disk took stay whole; the line it refused is cut off; the failure reaches
    the caller on a later emit, or on close when nothing else raised it."""
    out = _run_script("""
        import resource, signal, time
        from engine.events import EventLog
        from engine.errors import WriteFailed
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        log = EventLog("a.jsonl")
        log.emit("warning", message="first")
        log.flush()
        resource.setrlimit(resource.RLIMIT_FSIZE, (300, 300))
        log.emit("warning", message="y" * 60)    # fits: ends below 300 bytes
        log.emit("warning", message="x" * 200)   # does not
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                log.emit("warning", message="z")
                time.sleep(0.01)
            except WriteFailed as exc:
                print("emit raised:", exc)
                break
        log2 = EventLog("b.jsonl")
        log2.emit("warning", message="x" * 400)
        try:
            log2.close()
        except WriteFailed as exc:
            print("close raised:", exc)
    """, tmp_path)
    assert "emit raised:" in out.stdout and "a.jsonl" in out.stdout, out
    assert "close raised:" in out.stdout and "b.jsonl" in out.stdout, out
    lines = (tmp_path / "a.jsonl").read_text().split("\n")
    messages = [json.loads(x)["message"] for x in lines[:-1]]
    # the refused line is gone whole; short lines emitted after it still fit under the limit
    assert messages[:2] == ["first", "y" * 60] and set(messages[2:]) <= {"z"}
    assert lines[-1] == ""  # no torn line
    assert (tmp_path / "b.jsonl").read_text() == ""


def test_emit_does_not_wait_for_a_blocked_file_and_close_drains_it_in_order(tmp_path):
    """The log is a FIFO nobody reads yet: its 64 KiB buffer fills and writes block. Emitting
    still returns at once (a writer that blocked the caller would hang here); once a reader
    drains the pipe, close() delivers every line, in order."""
    fifo = tmp_path / "events.jsonl"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    log = EventLog(fifo)
    t = time.perf_counter()
    for i in range(400):  # ~400 KiB: six times the pipe's buffer
        log.emit("warning", message=f"{i} " + "x" * 1000)
    emitting = time.perf_counter() - t
    chunks = []
    closer = threading.Thread(target=log.close)
    closer.start()
    os.set_blocking(reader, True)
    while True:
        chunk = os.read(reader, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    closer.join(timeout=30)
    os.close(reader)
    assert not closer.is_alive()
    evs = [json.loads(x) for x in b"".join(chunks).decode().splitlines()]
    assert [e["seq"] for e in evs] == list(range(400))
    assert [e["message"].split()[0] for e in evs] == [str(i) for i in range(400)]
    assert emitting < 30  # it returned at all: the pipe was full long before the last emit


def test_queued_lines_reach_the_file_at_exit_without_close(tmp_path):
    out = _run_script("""
        from engine.events import EventLog
        log = EventLog("events.jsonl", seq=3)
        for i in range(2000):
            log.emit("warning", message=str(i))
    """, tmp_path)
    assert out.returncode == 0, out
    evs = list(iter_events(tmp_path / "events.jsonl"))
    assert [e["seq"] for e in evs] == list(range(3, 2003))


def test_emit_after_close_is_refused(tmp_path):
    log = EventLog(tmp_path / "events.jsonl")
    log.close()
    with pytest.raises(ValueError, match="closed"):
        log.emit("warning", message="late")


def test_throttle_lets_one_through_per_interval():
    t = Throttle(interval=60)
    assert t.ready() and not t.ready() and not t.ready()


@pytest.mark.slow
def test_sigterm_mid_run_loses_no_event_of_the_writer_thread(tmp_path):
    """The engine stops on SIGTERM while the writer thread has lines queued: every event it
    numbered reaches the file, in order, ending with run_ended."""
    from helpers.runs import events, sets, tuiprune, wait_for

    run_dir = tmp_path / "r"
    proc = tuiprune("run", "demo", "--run-dir", str(run_dir),
                    *sets("data.train_size=1500", "run.checkpoint_minutes=0"), cwd=tmp_path)
    wait_for(run_dir, lambda e: e["event"] == "batch" and e["batch"] >= 2, proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 3, out
    evs = events(run_dir)
    assert [e["seq"] for e in evs] == list(range(len(evs)))
    assert evs[-1]["event"] == "run_ended" and evs[-1]["status"] == "stopped"
    assert (run_dir / "events.jsonl").read_bytes().endswith(b"\n")


def test_heartbeats_fill_silences_and_never_stop_the_writer(tmp_path):
    """A quiet engine (a long evaluation) writes a numbered ``heartbeat`` saying what it is
    busy with; a heartbeat that cannot be built does not take the writer thread down."""
    import time as _time

    path = tmp_path / "events.jsonl"
    log = EventLog(path, heartbeat_seconds=0.2)
    log.heartbeat_fields = {"state": 1, "phase": "evaluating"}
    log.emit("warning", message="before")
    _time.sleep(0.7)
    log.heartbeat_fields = {"no_such_field": 1}  # a programming error in the run
    _time.sleep(0.5)
    log.emit("warning", message="after")
    log.close()
    evs = list(iter_events(path))
    kinds = [e["event"] for e in evs]
    assert kinds[0] == "warning" and kinds[-1] == "warning" and kinds.count("heartbeat") >= 2
    assert [e["seq"] for e in evs] == list(range(len(evs)))
    beat = next(e for e in evs if e["event"] == "heartbeat")
    assert (beat["state"], beat["phase"]) == (1, "evaluating")
