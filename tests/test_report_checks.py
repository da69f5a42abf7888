"""Every verification row of ``tuiprune report`` FAILS on a run doctored to break exactly what
the row claims (a copy of a real fixture run; its log or checkpoint edited by hand), and the
rows it does not claim stay green. The targets are worked out by hand in the tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.report import copy_run, doctor_log, events, verification

from tuiprune import report as R

PASSED, FAILED = R.MARK[R.PASS], R.MARK[R.FAIL]


def rows_of(run):
    return verification(R.build_report(run))


def assert_only_failing(rows, failing):
    """The rows named in ``failing`` fail, every other row passes (or is skipped: the copy
    has no checkpoint)."""
    got = {name for name, (mark, _) in rows.items() if mark == FAILED}
    assert got == set(failing), rows
    assert {mark for name, (mark, _) in rows.items() if name not in failing} <= {
        PASSED, R.MARK[R.SKIP]}


def first(evs, kind, **match):
    return next(e for e in evs if e["event"] == kind and all(e[k] == v for k, v in match.items()))


def test_whole_structures_in_the_log(tmp_path):
    run = copy_run("refill_global", tmp_path, checkpoints=False)

    def change(evs):
        first(evs, "pruned", step=0)["layers"][3]["attn_sparsity"] = 10.0   # 1 of 4 heads = 25 %
        return evs

    doctor_log(run, change)
    rows = rows_of(run)
    assert rows["Pruning steps cut whole heads and neurons (log)"][0] == FAILED
    assert "step 0 layer 3: attention sparsity 10.00%" in \
        rows["Pruning steps cut whole heads and neurons (log)"][1]


def test_kept_counts_against_the_configured_ratios(tmp_path):
    """Step 1 of refill_global: 24 heads × 0.7 → 16, then 16 × 0.7 = 11.2 → 11; a log that
    says 12 (a wrong keep rule in the engine) fails, though it is whole and in force."""
    run = copy_run("refill_global", tmp_path, checkpoints=False)

    def change(evs):
        step = first(evs, "pruned", step=1)
        assert step["heads_kept"] == 11
        step["heads_kept"] = 12
        return evs

    doctor_log(run, change)
    rows = rows_of(run)
    assert_only_failing(rows, ["Sparsity equals the target"])
    assert "step 1: heads kept 12, target 11 (global, ratio 0.3)" in \
        rows["Sparsity equals the target"][1]


def test_layerwise_neurons_against_the_configured_ratios(tmp_path):
    """Layer-wise, 192 neurons per block: step 0 keeps int(192 × 0.7) = 134 in each block."""
    run = copy_run("rsst_layerwise", tmp_path, checkpoints=False)

    def change(evs):
        layer = first(evs, "pruned", step=0)["layers"][2]
        assert layer["neurons_kept"] == 134
        layer["neurons_kept"], layer["mlp_sparsity"] = 135, 100 * (1 - 135 / 192)
        return evs

    doctor_log(run, change)
    detail = rows_of(run)["Sparsity equals the target"]
    assert detail[0] == FAILED
    assert "step 0: neurons kept [134, 134, 135, 134, 134, 134], target [134, 134, 134, 134, " \
           "134, 134]" in detail[1]


def test_configured_ratio_differs_from_the_logged_one(tmp_path):
    run = copy_run("refill_global", tmp_path, checkpoints=False)

    def change(evs):
        first(evs, "run_started")["head_ratio"] = [0.5, 0.5]
        return evs

    doctor_log(run, change)
    detail = rows_of(run)["Sparsity equals the target"]
    assert detail[0] == FAILED
    # 24 × 0.5 = 12 heads configured; the log kept 16 at a ratio of 0.3
    assert "step 0: heads ratio 0.3 logged, 0.5 configured" in detail[1]
    assert "step 0: heads kept 16, target 12" in detail[1]


def test_step_not_in_force_in_the_next_state(tmp_path):
    run = copy_run("refill_global", tmp_path, checkpoints=False)

    def change(evs):
        first(evs, "state_started", state=1)["sparsity"] = 20.0
        return evs

    doctor_log(run, change)
    rows = rows_of(run)
    assert_only_failing(rows, ["Each pruning step is in force in the next state"])
    assert "state 1 started at 20.00%, step 0 cut to 31.13%" in \
        rows["Each pruning step is in force in the next state"][1]


def test_rsst_state_ended_without_its_cut(tmp_path):
    run = copy_run("rsst_global", tmp_path, checkpoints=False)
    doctor_log(run, lambda evs: [e for e in evs if not (e["event"] == "hard_cut" and
                                                        e["state"] == 2)], renumber=True)
    detail = rows_of(run)["Each pruning step is in force in the next state"]
    assert detail == (FAILED, "state 2 ended without the hard cut of step 1")


def test_hard_cut_differs_from_its_target_in_neurons_only(tmp_path):
    """One neuron moved from block 1 to block 0 in the cut: same heads, same total."""
    run = copy_run("rsst_global", tmp_path, checkpoints=False)

    def change(evs):
        layers = first(evs, "hard_cut", state=2)["layers"]
        for layer, delta in ((layers[0], 1), (layers[1], -1)):
            layer["neurons_kept"] += delta
            layer["mlp_sparsity"] = 100 * (1 - layer["neurons_kept"] / layer["neurons_total"])
        return evs

    doctor_log(run, change)
    rows = rows_of(run)
    assert_only_failing(rows, ["Each hard cut equals its target"])
    target = [l["neurons_kept"] for l in first(events(run), "pruned", step=1)["layers"]]
    cut = [target[0] + 1, target[1] - 1] + target[2:]
    assert rows["Each hard cut equals its target"][1] == \
        f"state 2: neurons kept per block {cut} ≠ target {target}"


def test_a_lost_epoch_and_a_duplicate(tmp_path):
    run = copy_run("refill_global", tmp_path, checkpoints=False)

    def change(evs):
        lost = first(evs, "epoch_ended", state=1, epoch=1)
        again = dict(first(evs, "epoch_ended", state=2, epoch=0))
        return [e for e in evs if e is not lost] + [again]

    doctor_log(run, change, renumber=True)
    rows = rows_of(run)
    assert_only_failing(rows, ["No crash or resume gaps"])
    assert rows["No crash or resume gaps"][1] == \
        "state 1 lacks epoch(s) 1; epoch_ended 2, 0 logged again"


def best(run, state=2):
    return run / "checkpoints" / f"state{state}_best.pt"


def test_a_partly_masked_head(tmp_path):
    run = copy_run("refill_global", tmp_path)
    ckpt = torch.load(best(run), weights_only=True)
    mask = ckpt["masks"]["blocks.0.attn.qkv"]
    # block 0 keeps heads 0..2 of 4 (head_dim 12): prune only the q rows of head 0
    assert bool(mask[:12].all())
    mask[:12] = False
    torch.save(ckpt, best(run))
    rows = rows_of(run)
    assert rows["Final checkpoint: masks cut whole heads and neurons"] == (
        FAILED, "block 0: a head is only partly masked")


def test_a_pruned_weight_came_back(tmp_path):
    run = copy_run("refill_global", tmp_path)
    ckpt = torch.load(best(run), weights_only=True)
    name, mask = next((k, m) for k, m in ckpt["masks"].items() if not bool(m.all()))
    ckpt["model"][name + ".weight"][mask == 0] = 0.5
    torch.save(ckpt, best(run))
    rows = rows_of(run)
    assert rows["Final checkpoint: no pruned weight is non-zero"][0] == FAILED
    assert f"{int((mask == 0).sum()):,} pruned weights are non-zero" in \
        rows["Final checkpoint: no pruned weight is non-zero"][1]


def test_weights_hold_another_structure_than_the_log(tmp_path):
    """The log moves a head from block 1 to block 0; totals and whole-structure rows stay
    right, but what is alive per block in the checkpoint no longer matches."""
    run = copy_run("refill_global", tmp_path)

    def change(evs):
        layers = first(evs, "pruned", step=1)["layers"]
        for layer, delta in ((layers[0], -1), (layers[1], 1)):
            layer["heads_kept"] += delta
            layer["attn_sparsity"] = 100 * (1 - layer["heads_kept"] / layer["heads_total"])
        return evs

    doctor_log(run, change)
    rows = rows_of(run)
    assert_only_failing(rows, ["Final checkpoint: structure matches the log"])
    assert rows["Final checkpoint: structure matches the log"][1] == \
        "heads alive per block [3, 2, 1, 2, 2, 1] ≠ log [2, 3, 1, 2, 2, 1]"


def test_engine_pruned_one_head_too_many_in_log_and_weights(tmp_path):
    """A wrong keep rule shows in the log and the checkpoint alike (10 heads instead of
    int(16 × 0.7) = 11): the log agrees with the weights, the configured ratios do not."""
    run = copy_run("refill_global", tmp_path)
    ckpt = torch.load(best(run), weights_only=True)
    d, heads, hd = 48, 4, 12                   # the fixture's embed_dim, heads, head_dim
    qkv, proj = ckpt["model"]["blocks.0.attn.qkv.weight"], ckpt["model"]["blocks.0.attn.proj.weight"]
    rows_h0 = [t * heads * hd + i for t in range(3) for i in range(hd)]   # q, k, v of head 0
    qkv[rows_h0] = 0
    proj[:, :12] = 0
    ckpt["masks"]["blocks.0.attn.qkv"][rows_h0] = False
    ckpt["masks"]["blocks.0.attn.proj"][:, :12] = False
    torch.save(ckpt, best(run))
    head_weights = 3 * hd * d + d * hd

    def change(evs):
        step = first(evs, "pruned", step=1)
        step["heads_kept"] -= 1
        step["zeros"] += head_weights
        step["sparsity"] = 100 * step["zeros"] / step["total"]
        layer = step["layers"][0]
        layer["heads_kept"] -= 1
        layer["attn_sparsity"] = 100 * (1 - layer["heads_kept"] / layer["heads_total"])
        return evs

    doctor_log(run, change)
    rows = rows_of(run)
    assert_only_failing(rows, ["Sparsity equals the target",
                               "Final checkpoint: sparsity equals the target",
                               "Each pruning step is in force in the next state"])
    detail = rows["Final checkpoint: sparsity equals the target"][1]
    assert detail.startswith("heads alive [10] ≠ target [11]; 88,704 zero weights")
    assert 86_400 + head_weights == 88_704


def test_unloadable_checkpoint_is_a_failed_row(tmp_path):
    run = copy_run("refill_global", tmp_path)
    best(run).write_bytes(b"not a torch file")
    rows = rows_of(run)
    mark, detail = rows["Final checkpoint: masks cut whole heads and neurons"]
    assert mark == FAILED and detail.startswith("checkpoints/state2_best.pt cannot be loaded")
    assert all(rows[n][0] == R.MARK[R.SKIP] for n in rows if n.startswith("Final") and
               n != "Final checkpoint: masks cut whole heads and neurons")


def test_round_to_in_the_config_is_checked_per_block(tmp_path):
    """rsst_layerwise's blocks keep int(192 × 0.7) = 134 neurons. Had the run asked for
    prune.round_to = 8, each block would keep 128 (134 rounded down to a multiple of 8): the
    logged 134 must fail."""
    run = copy_run("rsst_layerwise", tmp_path, checkpoints=False)

    def change(evs):
        started = first(evs, "run_started")
        started["config"]["prune"]["round_to"] = 8
        started["model"]["head_dims"] = [12] * len(started["model"]["heads_per_block"])
        assert first(evs, "pruned", step=0)["layers"][0]["neurons_kept"] == 134
        return evs

    doctor_log(run, change)
    rows = rows_of(run)
    assert rows["Sparsity equals the target"][0] == FAILED
    assert "step 0: neurons kept [134" in rows["Sparsity equals the target"][1]
    assert "target [128" in rows["Sparsity equals the target"][1]


@pytest.mark.slow
@pytest.mark.parametrize("sorting", ["global", "layer-wise"])
def test_a_real_round_to_run_passes_every_row(tmp_path, sorting):
    from helpers.runs import overrides
    from tuiprune.run_command import run_main

    run = tmp_path / "r"
    assert run_main(Path("demo"), overrides("data.train_size=200", "prune.round_to=8",
                                            f"prune.sorting='{sorting}'"), run_dir=run) == 0
    rows = rows_of(run)
    assert {mark for mark, _ in rows.values()} <= {PASSED, R.MARK[R.SKIP]}, rows
    # TINY's head_dim is 8: a single head is already 8 wide
    assert "multiple of 8 neurons and 1 head(s)" in rows["Sparsity equals the target"][1]
