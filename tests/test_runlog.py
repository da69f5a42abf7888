"""``engine.runlog``: the whole-log fold, on hand-written logs and on the engine's fixture runs.

Expected values come from the test's own arithmetic on the lines it wrote, or from the fixture
logs read here with plain ``json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import runlog
from engine.runlog import read_log, structure_in_force

RUNS = Path(__file__).parent / "fixtures" / "runs"


class LogWriter:
    """Writes schema-v1 lines with consecutive ``seq`` (``gap`` skips some)."""

    def __init__(self, path: Path) -> None:
        self.path, self.seq, self.lines = path, 0, []

    def ev(self, kind: str, gap: int = 0, **fields) -> dict:
        self.seq += gap
        obj = {"v": 1, "event": kind, "time": 1.7e9 + self.seq, "seq": self.seq, **fields}
        self.seq += 1
        self.lines.append(json.dumps(obj))
        return obj

    def raw(self, line: str) -> None:
        self.lines.append(line)

    def write(self, tail: str = "") -> Path:
        self.path.write_text("".join(line + "\n" for line in self.lines) + tail)
        return self.path


def epoch(w: LogWriter, state: int, e: int, val: float, **extra) -> None:
    w.ev("epoch_started", state=state, epoch=e, batches=2, lr=0.1)
    w.ev("batch", state=state, epoch=e, batch=1, batches=2, loss=1.0, acc=50.0)
    w.ev("epoch_ended", state=state, epoch=e, train_loss=1.0, train_acc=50.0, val_loss=1.0,
         val_acc=val, seconds=2.0, images_per_s=100.0 + e, best=True, **extra)


def test_fold_of_a_small_complete_log(tmp_path):
    w = LogWriter(tmp_path / "events.jsonl")
    w.ev("run_started", run_id="r", name="r", states=2, epochs=2, method="refill",
         head_ratio=[0.5], mlp_ratio=[0.25])
    for s in range(2):
        w.ev("state_started", state=s, epochs=2, sparsity=0.0 if s == 0 else 40.0)
        epoch(w, s, 0, 60.0 + s)
        epoch(w, s, 1, 70.0 + s)
        w.ev("state_ended", state=s, best_val_acc=70.0 + s, best_epoch=1,
             final_val_acc=70.0 + s, sparsity=0.0 if s == 0 else 40.0, seconds=4.0)
    w.ev("warning", message="careful")
    w.ev("run_ended", status="completed", sparsity=40.0)
    log = read_log(w.write())
    assert log.events == len(w.lines) == 19
    assert (log.malformed, log.torn, log.seq_gaps.count, log.seq_backward) == (0, False, 0, 0)
    assert log.next_seq == 19 and log.first_seq == 0
    assert log.status == "completed" and log.states_total == 2 and log.states_done == 2
    assert sorted(log.states[1].epochs) == [0, 1]
    assert log.states[1].epochs_started == {0, 1}
    assert log.best_val_acc == 71.0 and log.final_sparsity == 40.0
    assert log.images_per_s == 101.0 and log.started_time == 1.7e9
    assert log.ratio("head_ratio", 0) == 0.5 and log.ratio("mlp_ratio", 1) is None
    assert [m["message"] for m in log.warnings] == ["careful"]
    assert log.kinds == {"run_started", "state_started", "epoch_started", "batch",
                         "epoch_ended", "state_ended", "warning", "run_ended"}
    assert log.durable == {("state_started", 0), ("state_started", 1), ("state_ended", 0),
                           ("state_ended", 1), ("epoch_ended", 0, 0), ("epoch_ended", 0, 1),
                           ("epoch_ended", 1, 0), ("epoch_ended", 1, 1)}
    assert log.last_state_ended["state"] == 1
    rows = log.summary_rows()
    assert [(r["state"], r["val_acc"], r["best_val_acc"]) for r in rows] == [
        (0, 70.0, 70.0), (1, 71.0, 71.0)]


def test_torn_tail_and_malformed_lines_are_counted_not_folded(tmp_path):
    w = LogWriter(tmp_path / "events.jsonl")
    w.ev("run_started", states=1)
    w.raw("this is not json")
    w.raw('{"v":1,"event":"epoch_ended","time":1.0,"seq":2,"state":"zero","epoch":0}')
    w.raw("[" * 2000 + "]" * 2000)
    w.seq = 4
    w.ev("state_started", state=0)
    w.ev("future_event_type", anything=1)                  # unknown types are ignored
    log = read_log(w.write(tail='{"v":1,"event":"run_ended","time":9.0,"seq":6,"sta'))
    assert log.malformed == 3
    assert len(log.problems) == 3 and "'state'" in log.problems[1]
    assert log.torn is True
    assert log.ended is None and log.status is None     # the torn run_ended is not read
    assert log.events == 2 and set(log.states) == {0}
    assert log.next_seq == 5            # the reader drops unknown types before the fold


def test_terminated_log_is_not_torn(tmp_path):
    w = LogWriter(tmp_path / "events.jsonl")
    w.ev("run_started", states=1)
    assert read_log(w.write()).torn is False


def test_seq_gaps_and_backward_seq(tmp_path):
    w = LogWriter(tmp_path / "events.jsonl")
    w.ev("run_started", states=1)         # 0
    w.ev("state_started", state=0)        # 1
    w.ev("warning", gap=3, message="a")   # 5: 2, 3, 4 lost
    w.seq = 3
    w.ev("warning", message="b")          # 3: backward (a second writer)
    w.seq = 9
    w.ev("warning", message="c")          # 9: 6..8 lost after the highest seq (5)
    log = read_log(w.write())
    assert list(log.seq_gaps) == [(1, 5), (5, 9)]
    assert log.seq_backward == 1
    assert log.next_seq == 10


def test_duplicates_and_a_resume(tmp_path):
    w = LogWriter(tmp_path / "events.jsonl")
    w.ev("run_started", states=2, epochs=2)
    w.ev("state_started", state=0, epochs=2)
    epoch(w, 0, 0, 50.0)
    w.ev("run_ended", status="stopped")
    w.ev("resumed", from_state=0, from_epoch=0, from_batch=1)
    epoch(w, 0, 0, 55.0)                  # epoch 0 logged again: a duplicate
    epoch(w, 0, 1, 60.0)
    log = read_log(w.write())
    st = log.states[0]
    assert st.duplicate_epochs == [0]
    assert st.epochs[0]["val_acc"] == 55.0          # the later line wins
    assert list(log.duplicates) == [("epoch_ended", 0, 0)]
    assert [r["from_batch"] for r in log.resumed] == [1]
    # a resume after run_ended: the run is going again (or died), no longer "stopped"
    assert log.status is None and log.last_status == "stopped"


def test_lambda_statistics_count_ramp_restarts(tmp_path):
    w = LogWriter(tmp_path / "events.jsonl")
    for step in (3, 10, 2, 7, 7):         # two ramps: max 10, then max 7
        w.ev("lambda", state=1, step=step, steps=10, value=0.1 * step)
    log = read_log(w.write())
    lam = log.states[1].lam
    assert (lam.events, lam.ramps, lam.updates) == (5, 2, 10 + 7)
    assert lam.first["step"] == 3 and lam.last["value"] == pytest.approx(0.7)


def test_memory_stays_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(runlog, "MAX_ROWS", 50)
    monkeypatch.setattr(runlog, "KEEP", 5)
    w = LogWriter(tmp_path / "events.jsonl")
    for e in range(80):
        w.ev("epoch_ended", state=0, epoch=e, val_acc=1.0)
        w.ev("batch", state=0, epoch=e, batch=0)
        w.ev("warning", message=f"w{e}")
    log = runlog.read_log(w.write())
    assert len(log.states[0].epochs) == 50 and log.dropped == 30
    assert log.warnings.count == 80
    assert [m["message"] for m in log.warnings] == [f"w{e}" for e in range(75, 80)]
    assert log.warnings.dropped == 75
    assert len(log.durable) == 80       # resume needs every durable key: never dropped


# ---------------------------------------------------------------- structure in force
# Refill, 3 states, steps 0 and 1 applied: state 0 dense, state 1 holds step 0, state 2 step 1.
# RSST, 3 states: targets of steps 0, 1; hard cuts at the end of states 1 and 2.
# prune_last adds an applied step after the last state, in force at its end (after its cut).
CASES = [
    ("refill", {0: True, 1: True}, [], 2, [None, ("pruned", 0), ("pruned", 1)]),
    ("rsst", {0: False, 1: False}, [1, 2], 2, [None, ("hard_cut", 1), ("hard_cut", 2)]),
    ("refill prune_last", {0: True, 1: True, 2: True}, [], 2,
     [None, ("pruned", 0), ("pruned", 2)]),
    ("rsst prune_last", {0: False, 1: False, 2: True}, [1, 2], 2,
     [None, ("hard_cut", 1), ("pruned", 2)]),
    ("rsst killed before cut", {0: False}, [], 2, [None, None, None]),
]


@pytest.mark.parametrize("name, applied, cuts, last, want", CASES, ids=[c[0] for c in CASES])
def test_structure_in_force_rule(name, applied, cuts, last, want):
    assert [structure_in_force(s, applied, cuts, last) for s in range(3)] == want


@pytest.mark.parametrize("name", ["refill_global", "rsst_global", "rsst_layerwise"])
def test_structure_in_force_on_fixture_runs(name):
    log = read_log(RUNS / name / "events.jsonl")
    evs = [json.loads(x) for x in (RUNS / name / "events.jsonl").read_text().splitlines()]
    pruned = {e["step"]: e for e in evs if e["event"] == "pruned"}
    cuts = {e["state"]: e for e in evs if e["event"] == "hard_cut"}
    assert log.structure_in_force(0) is None
    for s in (1, 2):
        got = log.structure_in_force(s)
        want = pruned[s - 1] if name.startswith("refill") else cuts[s]
        assert got["seq"] == want["seq"]


@pytest.mark.parametrize("name", sorted(p.name for p in RUNS.iterdir()))
def test_fold_of_fixture_runs_equals_a_plain_json_read(name):
    path = RUNS / name / "events.jsonl"
    evs = [json.loads(x) for x in path.read_text().splitlines()]
    log = read_log(path)
    assert log.events == len(evs) and log.malformed == 0 and not log.torn
    assert log.next_seq == evs[-1]["seq"] + 1
    ended = [e for e in evs if e["event"] == "run_ended"]
    assert log.status == (ended[-1]["status"] if ended else None)
    assert log.kinds == {e["event"] for e in evs}
    for e in evs:
        if e["event"] == "epoch_ended":
            assert log.states[e["state"]].epochs[e["epoch"]]["val_acc"] == e["val_acc"]
    assert log.checkpoints.count == sum(e["event"] == "checkpoint" for e in evs)
