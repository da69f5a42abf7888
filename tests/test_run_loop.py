"""The run loop's pieces against independent arithmetic: the learning-rate schedule, the
optimizer's weight-decay groups, every criterion × method through a real 3-state run, the
per-epoch λ ramp, and pruning after the last state."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from engine.train import lr_at, make_optimizer
from helpers.runs import epoch_counts, events, of, overrides
from tuiprune.run_command import run_main

T = {"epochs": 4, "lr": 0.1, "warmup_epochs": 1.0, "schedule": "cosine", "gamma": 0.5,
     "step_epochs": 2}


def test_lr_warms_up_linearly_then_follows_a_cosine():
    nb = 10  # steps per epoch: 10 warm-up steps, then 30 cosine steps
    assert [lr_at(T, s, nb) for s in (0, 4, 9)] == pytest.approx([0.01, 0.05, 0.1])
    for s in (10, 17, 25, 39):
        progress = (s - 10) / 30
        assert lr_at(T, s, nb) == pytest.approx(0.05 * (1 + math.cos(math.pi * progress)))
    assert lr_at(T, 40, nb) == pytest.approx(0.0, abs=1e-12)  # past the end: stays at 0


def test_step_and_constant_schedules():
    t = dict(T, warmup_epochs=0.0, schedule="step")
    nb = 5
    # gamma 0.5 every 2 epochs: epochs 0-1 at 0.1, 2-3 at 0.05
    assert [lr_at(t, e * nb, nb) for e in range(4)] == pytest.approx([0.1, 0.1, 0.05, 0.05])
    assert lr_at(t, 2 * nb - 1, nb) == pytest.approx(0.1)
    t = dict(T, warmup_epochs=0.0, schedule="constant")
    assert {lr_at(t, s, nb) for s in range(20)} == {0.1}


def test_weight_decay_spares_norms_biases_and_the_embeddings(tiny_vit):
    model = tiny_vit()
    opt = make_optimizer(model, {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.05,
                                 "momentum": 0.9})
    decay_of = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    names = dict(model.named_parameters())
    assert set(decay_of) == {id(p) for p in names.values()}  # every parameter, once
    for name, p in names.items():
        spared = p.ndim <= 1 or name in ("pos_embed", "cls_token")
        assert decay_of[id(p)] == (0.0 if spared else 0.05), name
    assert decay_of[id(names["blocks.0.attn.qkv.weight"])] == 0.05
    sgd = make_optimizer(model, {"optimizer": "sgd", "lr": 0.1, "weight_decay": 1e-4,
                                 "momentum": 0.9})
    assert all(g["nesterov"] and g["momentum"] == 0.9 for g in sgd.param_groups)


def _run(tmp_path: Path, name: str, *extra: str) -> list:
    run_dir = tmp_path / name
    assert run_main(Path("demo"), overrides("data.train_size=200", *extra),
                    run_dir=run_dir) == 0
    return events(run_dir)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["refill", "rsst"])
@pytest.mark.parametrize("criterion", ["remain", "magnitude", "l1", "l2", "saliency"])
def test_every_criterion_and_method_completes_three_states(tmp_path, method, criterion):
    evs = _run(tmp_path, "r", f"prune.method='{method}'", f"prune.criterion='{criterion}'",
               "prune.calib_batches=2")
    assert evs[-1]["status"] == "completed"
    assert epoch_counts(evs) == {(s, e): 1 for s in range(3) for e in range(2)}
    pruned = of(evs, "pruned")
    assert [p["criterion"] for p in pruned] == [criterion] * 2
    # 12 heads, 30 % of the alive pruned per step, at least one kept: 8, then 5
    assert [p["heads_kept"] for p in pruned] == [int(12 * 0.7), int(int(12 * 0.7) * 0.7)]
    assert [p["neurons_kept"] for p in pruned] == [int(384 * 0.7), int(int(384 * 0.7) * 0.7)]


@pytest.mark.slow
def test_ramp_epoch_restarts_lambda_every_epoch(tmp_path):
    evs = _run(tmp_path, "r", "prune.method='rsst'", "rsst.ramp='epoch'",
               "rsst.schedule='x'", "rsst.reg_granularity=0.01")
    started = of(evs, "run_started")[0]
    nb = started["batches_per_epoch"]
    lams = [e for e in of(evs, "lambda") if e["state"] == 1]
    assert {e["steps"] for e in lams} == {nb}  # a ramp is one epoch long
    steps = [e["step"] for e in lams]
    restarts = sum(1 for a, b in zip(steps, steps[1:]) if b < a)
    assert restarts == 1  # two epochs: one restart between them
    for e in lams:  # λ = g·(t+1) on the x schedule, t the step within the epoch's ramp
        assert e["value"] == pytest.approx(0.01 * e["step"]) or e["step"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("method", ["refill", "rsst"])
def test_prune_last_cuts_after_the_last_state(tmp_path, method):
    evs = _run(tmp_path, "r", f"prune.method='{method}'", "prune.prune_last=true",
               "prune.states=2")
    pruned = of(evs, "pruned")
    assert [p["state"] for p in pruned] == [0, 1]
    assert pruned[-1]["applied"] is True  # no state follows: the cut is applied at once
    assert pruned[0]["applied"] is (method == "refill")
    best = torch.load(Path(tmp_path / "r" / "checkpoints" / "state1_best.pt"),
                      weights_only=True)
    zeros = sum(int((~m).sum()) for m in best["masks"].values())
    assert zeros == pruned[-1]["zeros"]
    assert evs[-1]["status"] == "completed" and evs[-1]["sparsity"] == pruned[-1]["sparsity"]


@pytest.mark.slow
def test_a_lambda_ramp_that_peaks_after_the_learning_rate_is_gone_is_warned_about(tmp_path):
    """Cosine states of 2 epochs with exp_custom_exponents (k = 4): most of λ's rise comes
    when the learning rate is below 10 % of its peak; exp_custom ramps earlier and is quiet."""
    late = _run(tmp_path, "late", "prune.method='rsst'", "rsst.schedule='exp_custom_exponents'",
                "train.schedule='cosine'", "train.warmup_epochs=0")
    warnings = [w for w in of(late, "warning") if "10 %" in w["message"]
                or "10%" in w["message"]]
    assert [w["state"] for w in warnings] == [1, 2]  # once as each RSST state starts
    assert re.search(r"\d+ ?%", warnings[0]["message"]) and "exp_custom" in warnings[0]["message"]
    starts = {e["state"]: e["seq"] for e in of(late, "state_started")}
    first_batch = min(e["seq"] for e in of(late, "batch") if e["state"] == 1)
    assert starts[1] < warnings[0]["seq"] < first_batch
    early = _run(tmp_path, "early", "prune.method='rsst'", "rsst.schedule='exp_custom'",
                 "train.schedule='cosine'", "train.warmup_epochs=0")
    assert not [w for w in of(early, "warning") if "10 %" in w["message"]
                or "10%" in w["message"]]
