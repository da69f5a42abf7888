"""The log reader's two speed-ups for long logs (``engine.logread``), each checked against the
plain path it replaces: ``orjson`` decoding (falls back to ``json`` for every line it refuses,
so what is accepted and why is unchanged) and reading ``batch`` lines as their envelope only
in the whole-log fold (``engine.runlog``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from helpers.report import RUNS

from helpers import synthlog  # noqa: E402

from engine import logread  # noqa: E402
from engine.logread import envelope, iter_chunks, parse_line, parse_text  # noqa: E402
from engine.runlog import RunLog, read_log  # noqa: E402
from engine.schema import Malformed, line_prefix  # noqa: E402

LINES = [
    '{"v":1,"event":"warning","time":1.0,"seq":0,"message":"caf\\u00e9 \\udcff"}',  # surrogate
    '{"v":1,"event":"warning","time":1.0,"seq":0,"message":"x","n":123456789012345678901234}',
    '{"v":1,"event":"batch","time":1.0,"seq":1,"state":0,"epoch":0,"batch":0,"loss":NaN}',
    '{"v":1,"event":"batch","time":1.0,"seq":1,"state":0,"epoch":0,"batch":0} trailing',
    '{"v":1,"event":"batch","time":1.0,"seq":1,"state":0,"epoch":0,"batch":0}',
    '{"v":1,"event":"nope","time":1.0,"seq":1}', '[1, 2]', '{"v":1,', "not json",
    '{"v":1,"event":"epoch_started","time":1.0,"seq":2,"state":-1,"epoch":0}',
    "[" * 5000 + "]" * 5000,
]


def outcome(line: str):
    try:
        return ("event", parse_line(line))
    except Malformed as exc:
        return ("malformed", str(exc))


def test_orjson_accepts_and_refuses_what_json_does(monkeypatch):
    pytest.importorskip("orjson")
    fast = [outcome(line) for line in LINES]
    monkeypatch.setattr(logread, "orjson", None)
    plain = [outcome(line) for line in LINES]
    # the one difference: an integer beyond 64 bits is read as a float (no schema field
    # allows one; in the free-form config it shows as a float)
    assert fast[1][1]["n"] == float(plain[1][1]["n"]) and plain[1][1]["n"] == \
        123456789012345678901234
    assert fast[:1] + fast[2:] == plain[:1] + plain[2:]
    assert fast[0][1]["message"] == "café \udcff"
    assert [kind for kind, _ in fast] == ["event", "event", "malformed", "malformed", "event",
                                          "event", "malformed", "malformed", "malformed",
                                          "malformed", "malformed"]


def test_envelope_reads_only_the_writers_spelling():
    prefix = line_prefix("batch")
    line = synthlog.line(next(e for e in synthlog.events() if e["event"] == "batch")).strip()
    assert envelope(line, prefix, "batch") == {"v": 1, "event": "batch",
                                               "time": json.loads(line)["time"],
                                               "seq": json.loads(line)["seq"]}
    for other in (line.replace('"seq":3', '"seq":3.0'), line.replace('"seq":3', '"seq":-3'),
                  line.replace('"time":', '"time":"x",'), line[:-1],
                  line.replace('"time":1764000001.6', '"time":1e300')):
        assert envelope(other, prefix, "batch") is None, other
        assert outcome(other)[0] == "malformed"
    # a line the envelope does not read is parsed and checked whole
    bad = '{"v":1,"event":"batch","time":1.0,"seq":-5,"state":0}'
    parsed = parse_text(bad + "\n" + line, envelope_only=("batch",))
    assert parsed.malformed == 1 and [e["seq"] for e in parsed.events] == [3]


def fold(path: Path, envelope_only) -> RunLog:
    log = RunLog(path)
    for chunk in iter_chunks(path, envelope_only=envelope_only):
        log.add_chunk(chunk)
    return log


@pytest.mark.parametrize("source", ["refill_global", "rsst_global", "failed_nan", "synth"])
def test_the_fold_is_the_same_with_batch_envelopes(tmp_path, source):
    if source == "synth":  # seq gaps, a resume, a torn tail
        evs = list(synthlog.events("rsst", states=3, epochs=2, batches=30))
        del evs[40:45]
        path = synthlog.write(tmp_path / "events.jsonl", evs, extra='{"v":1,"event":"ba')
    else:
        path = RUNS / source / "events.jsonl"
    full, light = fold(path, ()), read_log(path)
    for attr in ("events", "malformed", "torn", "first_seq", "last_seq", "max_seq",
                 "seq_backward", "kinds", "durable", "status", "best_val_acc",
                 "final_sparsity", "images_per_s"):
        assert getattr(light, attr) == getattr(full, attr), attr
    assert list(light.seq_gaps) == list(full.seq_gaps)
    assert {s: (st.lam.events, st.lam.updates, st.lam.series.snapshot(), st.epochs)
            for s, st in light.states.items()} == \
        {s: (st.lam.events, st.lam.updates, st.lam.series.snapshot(), st.epochs)
         for s, st in full.states.items()}
    assert "batch" in light.kinds
