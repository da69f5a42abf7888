"""engine.logread, the one reader of the event log: lines, torn tails, validation, the
superseded-batch fast path (torch-free; the fuzz corpus is in test_fuzz_readers.py)."""

from __future__ import annotations

import json

import pytest

from engine.events import EventLog
from engine.logread import (BATCH_PREFIX, MAX_LINE_BYTES, LineSplitter, ReadStats, first_event,
                            iter_chunks, iter_events, parse_line, parse_text,
                            truncate_torn_tail)
from engine.schema import Malformed
from helpers import synthlog
from tuiprune.dashboard.reducer import Reducer

WARNING = {"v": 1, "event": "warning", "time": 1.0, "seq": 0, "message": "m"}


def test_parse_line_gives_validated_events_with_absent_fields_as_none():
    ev = parse_line(json.dumps(WARNING) + "  \r")
    assert ev["message"] == "m" and ev["state"] is None and ev["batch"] is None
    assert parse_line(json.dumps({**WARNING, "event": "from_the_future"})) is None


@pytest.mark.parametrize("line, reason", [
    ("[1, 2]", "not a JSON object"),
    (json.dumps(WARNING) + " trailing", "text after the JSON object"),
    ('{"v":1,"event":"warning"', "not JSON"),
    ("[" * 1000 + "]" * 1000, "not a JSON object"),  # within the decoder's depth limit
    ("[" * 5000 + "]" * 5000, "nested too deeply"),
    (json.dumps({**WARNING, "event": {"x": 1}}), "field 'event'"),
    (json.dumps({**WARNING, "seq": 1.5}), "field 'seq'"),
    (json.dumps({**WARNING, "message": None}), "warning: field 'message'"),
    ('{"v":1,"event":"batch","time":1,"seq":0,"state":1e30,"epoch":0,"batch":0}',
     "batch: field 'state'"),
    ('{"v":1,"event":"run_started","time":1,"seq":0,"states":Infinity}',
     "run_started: field 'states'"),
])
def test_parse_line_names_what_is_malformed(line, reason):
    with pytest.raises(Malformed, match=reason):
        parse_line(line)


def test_parse_text_counts_malformed_lines_and_ignores_blank_ones():
    good = json.dumps(WARNING)
    parsed = parse_text(f"{good}\nnot json\n\n   \n{good}\n[3]\n")
    assert [e["event"] for e in parsed.events] == ["warning", "warning"]
    assert parsed.malformed == 2 and len(parsed.problems) == 2


def test_splitter_keeps_a_torn_line_until_its_end_arrives():
    line = synthlog.line({**WARNING, "message": "é ünïcode"}).encode()
    cut = len(line) - 5  # inside the line, maybe inside a multi-byte character
    s = LineSplitter()
    assert s.feed(line[:cut]).events == [] and s.torn()
    parsed = s.feed(line[cut:] + b'{"v":1,"event":"error"')
    assert [e["message"] for e in parsed.events] == ["é ünïcode"] and parsed.malformed == 0
    assert s.tail == b'{"v":1,"event":"error"' and s.torn()


def test_splitter_drops_an_overlong_line_without_holding_it():
    s = LineSplitter()
    parsed = s.feed(b'{"v":1,"message":"' + b"x" * (MAX_LINE_BYTES + 10))
    assert parsed.malformed == 1 and s.tail == b""
    assert s.feed(b"x" * 100).events == []  # still inside the dropped line
    parsed = s.feed(b'x"}\n' + synthlog.line(WARNING).encode())
    assert [e["event"] for e in parsed.events] == ["warning"] and parsed.malformed == 0


def test_iter_chunks_reads_everything_and_reports_the_torn_tail(tmp_path):
    evs = list(synthlog.events("refill", states=2, epochs=1, batches=5))
    path = synthlog.write(tmp_path / "events.jsonl", evs, extra='garbage\n{"v":1,"ev')
    chunks = list(iter_chunks(path, max_events=7))
    assert [e["seq"] for c in chunks for e in c.events] == [e["seq"] for e in evs]
    assert sum(c.malformed for c in chunks) == 1  # the torn tail is not a malformed line
    assert chunks[-1].caught_up and chunks[-1].torn
    assert not any(c.caught_up or c.torn for c in chunks[:-1])
    assert all(len(c.events) <= 7 for c in chunks)
    stats = ReadStats()
    assert len(list(iter_events(path, stats))) == len(evs)
    assert (stats.malformed, stats.torn) == (1, True)


def test_batch_prefix_is_how_the_writer_spells_a_batch_event(tmp_path):
    log = EventLog(tmp_path / "events.jsonl")
    log.emit("batch", state=0, epoch=0, batch=0, batches=1, loss=0.5, acc=50.0, lr=0.1,
             images_per_s=10.0)
    log.close()
    assert (tmp_path / "events.jsonl").read_text().startswith(BATCH_PREFIX)


def test_skipping_superseded_batch_lines_changes_nothing_a_viewer_shows(tmp_path):
    evs = list(synthlog.events("rsst", states=3, epochs=2, batches=30))
    path = synthlog.write(tmp_path / "events.jsonl", evs)
    full, fast = Reducer(), Reducer()
    for chunk in iter_chunks(path):
        full.apply_chunk(chunk)
    kept = 0
    for chunk in iter_chunks(path, skip=lambda: True):
        fast.apply_chunk(chunk)
        kept += len(chunk.events)
    assert kept < len(evs) - 100  # most batch lines were never parsed
    a, b = full.view, fast.view
    assert [s.points for s in a.states] == [s.points for s in b.states]
    assert [s.lambdas.snapshot() for s in a.states] == [s.lambdas.snapshot() for s in b.states]
    assert a.progress.loss.snapshot() == b.progress.loss.snapshot()
    assert (a.progress.batch, a.progress.epoch, a.last_time, a.status) == \
        (b.progress.batch, b.progress.epoch, b.last_time, b.status)


def test_skipping_only_applies_to_the_writers_spelling():
    head = '"time":1,"seq":0,"state":0,"epoch":0'
    spaced = '{"v": 1, "event": "batch", "time": 1, "seq": 0, "state": 0, "epoch": 0, ' \
             '"batch": 3}'
    compact = BATCH_PREFIX + head + ',"batch":4}'
    text = "\n".join([spaced, compact, '{"v":1,"event":"epoch_started",' + head.replace(
        '"epoch":0', '"epoch":1') + "}"])
    parsed = parse_text(text, skip_superseded=True)
    assert [e.get("batch") for e in parsed.events] == [3, None]
    assert parsed.malformed == 0


def test_truncate_torn_tail(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"event":"a"}\n{"event":"b"}\n{"event":"c"')
    assert truncate_torn_tail(path) == len('{"event":"c"')
    assert path.read_text() == '{"event":"a"}\n{"event":"b"}\n'
    assert truncate_torn_tail(path) == 0
    path.write_text('{"event":"only-torn"')
    assert truncate_torn_tail(path) > 0 and path.read_text() == ""
    path.write_text('{"event":"a"}\n' + "x" * 10000)
    truncate_torn_tail(path)
    assert path.read_text() == '{"event":"a"}\n'


def test_first_event_says_why_not(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(synthlog.line(WARNING))
    assert first_event(path)[0]["message"] == "m"
    path.write_text('{"v":1')
    assert first_event(path) == (None, "its first line is incomplete or longer than a megabyte")
    path.write_text("hello\n")
    event, why = first_event(path)
    assert event is None and why.startswith("its first line is not an event (not JSON")
