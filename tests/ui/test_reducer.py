"""The reducer folds validated events into the view model; no screen involved."""

from __future__ import annotations

import pytest

from engine.logread import Chunk
from helpers import synthlog
from helpers.dash import validated
from tuiprune.dashboard import timing
from tuiprune.dashboard import viewmodel as vm
from tuiprune.dashboard.liveness import lost_event
from tuiprune.dashboard.reducer import MAX_FIELD_CHARS, MAX_TEXT_CHARS, Reducer
from engine.series import BoundedSeries


def reduce(evs) -> vm.RunView:
    r = Reducer()
    r.apply_all(validated(evs))
    return r.view


def test_bounded_series_keeps_evenly_spaced_points_and_the_exact_last_one():
    s = BoundedSeries(8)
    for i in range(1000):
        s.add(i, i * 2.0)
    assert len(s) < 8 and s.count == 1000
    xs = [x for x, _ in s.points]
    gaps = {b - a for a, b in zip(xs, xs[1:])}
    assert len(gaps) == 1 and xs[0] == 0  # one stride, from the start
    assert s.snapshot()[-1] == (999, 1998.0)
    with pytest.raises(ValueError, match="even number"):
        BoundedSeries(7)


def test_rsst_run_folds_into_states_epochs_lambda_and_structures():
    evs = list(synthlog.events("rsst", states=3, epochs=2, batches=20))
    view = reduce(evs)
    assert (view.name, view.method, view.status) == ("synthetic", "rsst", vm.COMPLETED)
    assert view.model_name == "vit_small_patch16_224" and view.dataset == "CIFAR-10"
    assert [st.status for st in view.states] == [vm.DONE] * 3
    ended = [e for e in evs if e["event"] == "epoch_ended"]
    assert [(p.state, p.epoch, p.val_acc) for st in view.states for p in st.ordered_points()] \
        == [(e["state"], e["epoch"], e["val_acc"]) for e in ended]
    state_ended = [e for e in evs if e["event"] == "state_ended"]
    assert [st.best_val_acc for st in view.states] == [e["best_val_acc"] for e in state_ended]
    assert [st.sparsity_end for st in view.states] == [e["sparsity"] for e in state_ended]
    # λ only in states 1 and 2, its last event kept
    lam = [e for e in evs if e["event"] == "lambda"]
    last2 = [e for e in lam if e["state"] == 2][-1]
    assert view.states[0].lambda_last is None
    got = view.states[2].lambda_last
    assert (got.value, got.step, got.steps) == (last2["value"], last2["step"], last2["steps"])
    assert (got.squeeze.heads, got.squeeze.neurons, got.squeeze.regularized) == \
        (last2["heads"], last2["neurons"], last2["regularized"])
    assert view.states[1].lambdas.count == len([e for e in lam if e["state"] == 1])
    # pruning steps after states 0 and 1 (targets), hard cuts at the end of states 1 and 2
    pruned = [e for e in evs if e["event"] == "pruned"]
    assert [st.pruned is not None for st in view.states] == [True, True, False]
    assert not view.states[0].pruned.applied
    rows = view.states[1].pruned.layers
    assert [(r.block, r.heads_kept, r.neurons_kept) for r in rows] == \
        [(r["block"], r["heads_kept"], r["neurons_kept"]) for r in pruned[1]["layers"]]
    assert view.states[1].hard_cut.val_acc_after is not None and view.states[0].hard_cut is None
    assert view.ended.status == "completed"
    assert timing.elapsed(view) == pytest.approx(evs[-1]["time"] - evs[0]["time"])
    assert timing.run_eta(view) is None  # not running


def test_progress_follows_the_current_epoch_and_eta_counts_what_is_left():
    evs = list(synthlog.events("refill", states=2, epochs=2, batches=40))
    cut = next(i for i, e in enumerate(evs) if e["event"] == "batch" and e["state"] == 1
               and e["epoch"] == 0 and e["batch"] == 9)
    view = reduce(evs[:cut + 1])
    p = view.progress
    assert (view.status, p.state, p.epoch, p.batch, p.batches) == (vm.RUNNING, 1, 0, 9, 40)
    assert timing.epoch_fraction(view) == pytest.approx(10 / 40)
    assert p.loss.count == 10 and view.current_state == 1
    assert [st.status for st in view.states] == [vm.DONE, vm.ACTIVE]
    eta = timing.run_eta(view)
    epoch_s = 40 * 0.1 + 3.5  # synthlog's epoch seconds
    assert eta == pytest.approx((4 - 2.25) * ((2 * epoch_s + (p.last_time - p.started_at))
                                              / 2.25))
    assert timing.epoch_eta(view) == pytest.approx((p.last_time - p.started_at) / 10 * 30)


def test_failed_run_keeps_its_error_with_traceback():
    view = reduce(synthlog.events("rsst", fail_at_state=1))
    assert view.status == vm.FAILED
    assert [st.status for st in view.states] == [vm.DONE, vm.FAILED, vm.PENDING]
    errors = [e for e in view.log if e.level == "error"]
    assert "KeyError: 'blocks.0.attn.qkv.weight'" in errors[0].text
    assert 'File "engine/runner.py", line 210' in errors[0].text
    assert errors[0].where == "s1 e1"
    assert view.errors == 2  # the error event and the failed run_ended


def test_malformed_counts_unknown_events_and_newer_schema_are_survived():
    evs = validated(synthlog.events("refill", states=1, epochs=1, batches=3))
    odd = validated([{"v": 1, "event": "from_the_future", "time": 1.0, "seq": 90, "x": 1},
                     {"v": 3, "event": "warning", "time": 1.0, "seq": 91,
                      "message": "hello from v3", "new_field": [1]}])
    r = Reducer()
    r.apply_chunk(Chunk(evs[:4] + odd + evs[4:], malformed=3,
                        problems=["not JSON (Expecting value)", "epoch_ended: field 'state'"]))
    view = r.view
    assert view.status == vm.COMPLETED
    assert view.malformed == 3 and view.problems[0] == "not JSON (Expecting value)"
    assert view.newer_schema == 3
    texts = [e.text for e in view.log]
    assert any("schema v3 is newer" in t for t in texts)
    assert "hello from v3" in texts
    assert view.warnings == 2


def test_reset_starts_from_scratch_and_every_part_counts_as_changed():
    r = Reducer()
    r.apply_all(validated(synthlog.events("refill", states=2, epochs=1, batches=3)))
    before = vars(r.view.changes).copy()
    r.apply_chunk(Chunk(validated([{"v": 1, "event": "run_started", "time": 5.0, "seq": 0,
                                    "run_id": "other", "states": 1}]), reset=True))
    assert r.view.run_id == "other" and len(r.view.states) == 1 and r.view.malformed == 0
    assert all(getattr(r.view.changes, k) > v for k, v in before.items())


def test_engine_lost_is_a_synthetic_event_and_a_resume_clears_it(tmp_path):
    evs = validated(synthlog.events("rsst", crash_at_state=1))
    (tmp_path / "engine.log").write_text("line a\nKilled\n")
    r = Reducer()
    r.apply_all(evs)
    assert r.view.status == vm.RUNNING
    r.apply(lost_event(tmp_path, r.view.last_time))
    assert r.view.status == vm.LOST and r.view.states[1].status == vm.LOST
    assert f"no engine.pid in {tmp_path}" in r.view.log[-1].text
    assert "last lines of engine.log:\nline a\nKilled" in r.view.log[-1].text
    r.apply_all(validated([{"v": 1, "event": "resumed", "from_state": 1, "from_epoch": 1,
                            "from_batch": 0, "pid": 7, "device": "cpu", "seq": 999,
                            "checkpoint": "checkpoints/latest.pt", "time": 1.0}]))
    assert r.view.status == vm.RUNNING and r.view.states[1].status == vm.ACTIVE


def test_memory_stays_bounded_on_a_long_run():
    r = Reducer()
    r.apply_all(validated(synthlog.events("rsst", states=4, epochs=6, batches=400)))
    view = r.view
    assert sum(len(st.points) for st in view.states) == 24  # every epoch point kept
    assert all(len(st.lambdas) <= vm.LAMBDA_POINTS for st in view.states)
    assert view.states[3].lambdas.count == 6 * 400
    assert len(view.progress.loss) <= vm.BATCH_POINTS
    assert view.progress.loss.count == 400  # the current epoch only


def test_a_repeated_epoch_after_a_resume_replaces_the_first():
    evs = list(synthlog.events("refill", states=1, epochs=2, batches=3))
    first = next(e for e in evs if e["event"] == "epoch_ended" and e["epoch"] == 1)
    again = {**first, "seq": 500, "val_acc": 12.5}
    view = reduce(evs + [again])
    assert [p.epoch for p in view.states[0].ordered_points()] == [0, 1]
    assert view.states[0].last_point().val_acc == 12.5


def test_long_strings_are_cut_and_every_stored_string_is_printable():
    name = "\x1b]0;pwned\x07" + "n" * (2 * MAX_FIELD_CHARS)
    message = "\x9b2J\x1b[2J" + "m" * (2 * MAX_TEXT_CHARS)
    evs = list(synthlog.events("refill", states=1, epochs=1, batches=2, name="x"))
    evs[0] = {**evs[0], "name": name}
    evs.insert(2, {"v": 1, "event": "warning", "time": evs[1]["time"], "seq": 1000,
                   "message": message})
    view = reduce(evs)
    assert view.name.startswith("\\x1b]0;pwned\\x07nnn") and len(view.name) < 2 * MAX_FIELD_CHARS
    warning = next(e for e in view.log if e.level == "warning")
    assert warning.text.startswith("\\x9b2J\\x1b[2J") and len(warning.text) < 2 * MAX_TEXT_CHARS
    assert "more characters" in warning.text


def test_the_sparsity_pane_shows_the_step_after_a_state_or_the_structure_in_force():
    from tuiprune.dashboard.widgets.sparsity import structure_for

    refill = reduce(synthlog.events("refill", states=3, epochs=1, batches=2))
    # steps after states 0 and 1 are applied; state 2 has none: step 1 is in force during it
    assert [structure_for(refill, i)[1] for i in range(3)] == [
        "after state 0", "after state 1", "in force during state 2 (step after state 1)"]
    assert structure_for(refill, 2)[0] is refill.states[1].pruned
    rsst = reduce(synthlog.events("rsst", states=3, epochs=1, batches=2))
    assert [structure_for(rsst, i)[1] for i in range(3)] == [
        "target after state 0 (cut at the end of state 1)",
        "target after state 1 (cut at the end of state 2)", "after state 2 (hard cut)"]
    crashed = reduce(synthlog.events("rsst", states=3, epochs=1, batches=4, crash_at_state=1))
    assert structure_for(crashed, 1)[1] == "target squeezed during state 1 (cut at its end)"
    assert structure_for(reduce([]), 0) == (None, "no state yet")
