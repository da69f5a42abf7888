"""End-to-end runs of the real engine on a tiny timm ViT: the event log, checkpoints, stop,
kill -9 and resume, and the bad inputs of issue 3."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.errors import UserError
from engine.checkpoint import load_checkpoint, load_model
from helpers.runs import epoch_counts, events, of, overrides, sets, tuiprune, wait_for
from tuiprune.run_command import run_main

pytestmark = pytest.mark.slow


def run_inprocess(tmp_path: Path, name: str, *extra: str) -> Path:
    run_dir = tmp_path / name
    assert run_main(Path("demo"), overrides(*extra), run_dir=run_dir) == 0
    return run_dir


@pytest.fixture(scope="module")
def four_runs(tmp_path_factory):
    """Refill and RSST × global and layer-wise, each a complete 3-state run."""
    base = tmp_path_factory.mktemp("runs")
    out = {}
    for method in ("refill", "rsst"):
        for sorting in ("global", "layer-wise"):
            out[method, sorting] = run_inprocess(base, f"{method}-{sorting}",
                                                 f"prune.method='{method}'",
                                                 f"prune.sorting='{sorting}'")
    return out


@pytest.mark.parametrize("method", ["refill", "rsst"])
@pytest.mark.parametrize("sorting", ["global", "layer-wise"])
def test_event_log_of_a_complete_run(four_runs, method, sorting):
    run_dir = four_runs[method, sorting]
    evs = events(run_dir)
    assert evs[0]["event"] == "run_started" and evs[-1]["event"] == "run_ended"
    assert evs[-1]["status"] == "completed"
    assert [e["seq"] for e in evs] == list(range(len(evs)))
    assert all(e["v"] == 1 and isinstance(e["time"], float) for e in evs)
    started = evs[0]
    assert started["model"]["blocks"] == 3 and started["model"]["heads_per_block"] == [4] * 3
    assert started["model"]["weights_source"] == "random init"
    assert started["data"]["val"] > 0 and started["data"]["test"] == 60

    # every epoch of every state ended exactly once, with validation accuracy
    assert epoch_counts(evs) == {(s, e): 1 for s in range(3) for e in range(2)}
    for e in of(evs, "epoch_ended"):
        assert 0 <= e["val_acc"] <= 100 and 0 <= e["train_acc"] <= 100
        assert e["test_acc"] is not None and e["seconds"] > 0

    # one pruning step after each state but the last, a row per block
    pruned = of(evs, "pruned")
    assert [p["state"] for p in pruned] == [0, 1]
    for p in pruned:
        assert len(p["layers"]) == 3 and p["sorting"] == sorting
        assert p["applied"] is (method == "refill")
        assert p["zeros"] == round(p["sparsity"] / 100 * p["total"])
        for row in p["layers"]:
            assert row["heads_total"] == 4 and row["neurons_total"] == 128
    assert pruned[1]["heads_kept"] < pruned[0]["heads_kept"] < 12
    if sorting == "layer-wise":
        assert len({row["heads_kept"] for row in pruned[0]["layers"]}) == 1

    if method == "rsst":
        cuts = of(evs, "hard_cut")
        assert [c["state"] for c in cuts] == [1, 2]
        for state in (1, 2):
            lam = [e["value"] for e in of(evs, "lambda") if e["state"] == state]
            assert len(lam) >= 2 and lam == sorted(lam) and lam[-1] > lam[0]
            assert math.isclose(lam[-1], 1.0)  # the last value of the state is always written
        assert cuts[0]["sparsity"] == pruned[0]["sparsity"]
        assert not of(evs, "lambda")[0]["state"] == 0
    else:
        assert not of(evs, "lambda") and not of(evs, "hard_cut")
        state1 = [e for e in of(evs, "state_started") if e["state"] == 1][0]
        assert state1["sparsity"] == pruned[0]["sparsity"]
    ended = of(evs, "state_ended")
    assert [e["state"] for e in ended] == [0, 1, 2]
    assert ended[2]["sparsity"] == pruned[1]["sparsity"]
    run_ended = evs[-1]
    assert run_ended["sparsity"] == ended[2]["sparsity"]
    for key in ("best_val_acc", "final_val_acc", "test_acc"):
        assert run_ended[key] == ended[2][key]


@pytest.mark.parametrize("method", ["refill", "rsst"])
def test_checkpoints_hold_dense_keys_masks_and_exact_zeros(four_runs, method):
    run_dir = four_runs[method, "global"]
    ckdir = run_dir / "checkpoints"
    assert {"latest.pt", "init.pt", "state0_best.pt", "state1_best.pt",
            "state2_best.pt"} <= {p.name for p in ckdir.iterdir()}
    model, masks, ck = load_model(ckdir / "state2_best.pt")
    dense_keys = set(load_checkpoint(ckdir / "init.pt")["model"])
    assert set(ck["model"]) == dense_keys
    assert not any("weight_orig" in k or "mask" in k for k in ck["model"])
    zeros = 0
    for name, mask in masks.items():
        w = ck["model"][f"{name}.weight"]
        assert torch.all(w[~mask.bool()] == 0)
        zeros += int((~mask.bool()).sum())
    last_pruned = of(events(run_dir), "pruned")[-1]
    assert zeros == last_pruned["zeros"]


@pytest.mark.parametrize("rewind, source", [("init", "init.pt"), ("epoch:1", "rewind.pt")])
@pytest.mark.parametrize("method", ["refill", "rsst"])
def test_each_state_starts_from_the_rewind_target(tmp_path, rewind, source, method):
    """The weights a state starts from are the rewind target's, with the masks in force
    applied — checked at the moment the engine announces the state."""
    from engine.config import load_config
    from engine.runner import Run

    cfg = load_config("demo", overrides(f"prune.rewind='{rewind}'", f"prune.method='{method}'"))
    starts = {}
    run = Run(cfg, tmp_path / "run")

    def listener(ev):
        if ev["event"] == "state_started" and ev["state"] > 0:
            from engine.pruning import current_masks

            starts[ev["state"]] = ({k: v.detach().clone()
                                    for k, v in run.model.state_dict().items()},
                                   current_masks(run.model) or {})

    run.listeners.append(listener)
    assert run.start() == 0
    target = load_checkpoint(tmp_path / "run" / "checkpoints" / source)
    if rewind == "epoch:1":
        assert target["epoch"] == 1
        assert not torch.equal(target["model"]["blocks.0.norm1.weight"],
                               load_checkpoint(tmp_path / "run" / "checkpoints" /
                                               "init.pt")["model"]["blocks.0.norm1.weight"])
    assert set(starts) == {1, 2}
    for state, (weights, masks) in starts.items():
        assert bool(masks) == (method == "refill" or state == 2)  # RSST cuts a state later
        for key, value in weights.items():
            expected = target["model"][key]
            mask = masks.get(key.removesuffix(".weight"))
            if mask is not None:
                expected = expected * mask  # pruned weights exactly zero, the rest rewound
            assert torch.equal(value, expected), (state, key)


def test_plain_output_has_one_line_per_epoch_and_no_control_characters(tmp_path, capsys):
    run_inprocess(tmp_path, "plain", "prune.method='rsst'")
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out
    lines = out.splitlines()
    assert sum(1 for ln in lines if " epoch " in ln and "train" in ln and "val" in ln) == 6
    assert sum(1 for ln in lines if ln.startswith("pruning step ")) == 2
    assert any("attn sparsity" in ln for ln in lines)  # the per-layer table
    assert any(ln.startswith("run completed") for ln in lines)
    assert "summary" in out


def test_stop_then_resume_has_no_duplicated_or_missing_epochs(tmp_path):
    run_dir = tmp_path / "stopped"
    args = sets("data.train_size=1500", "prune.method='rsst'")
    proc = tuiprune("run", "demo", "--run-dir", str(run_dir), *args, cwd=tmp_path)
    wait_for(run_dir, lambda e: e["event"] == "batch" and e["state"] == 1 and e["batch"] >= 1,
             proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 3, out
    evs = events(run_dir)
    assert evs[-1]["event"] == "run_ended" and evs[-1]["status"] == "stopped"
    assert "--resume" in evs[-1]["message"]
    assert any(e["event"] == "checkpoint" and e["kind"] == "stop" for e in evs)

    proc = tuiprune("run", "--resume", str(run_dir), cwd=tmp_path)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    evs = events(run_dir)
    assert evs[-1]["status"] == "completed"
    resumed = of(evs, "resumed")
    assert len(resumed) == 1 and resumed[0]["from_state"] == 1
    assert epoch_counts(evs) == {(s, e): 1 for s in range(3) for e in range(2)}
    assert [e["seq"] for e in evs] == list(range(len(evs)))
    assert [p["state"] for p in of(evs, "pruned")] == [0, 1]
    assert [c["state"] for c in of(evs, "hard_cut")] == [1, 2]


@pytest.mark.parametrize("when", [
    lambda e: e["event"] == "batch" and e["state"] == 1 and e["epoch"] == 1,
    lambda e: e["event"] == "pruned" and e["state"] == 0,
], ids=["mid-epoch", "right-after-pruning"])
def test_kill_9_then_resume_loses_at_most_the_epoch_in_progress(tmp_path, when):
    run_dir = tmp_path / "killed"
    proc = tuiprune("run", "demo", "--run-dir", str(run_dir), *sets("data.train_size=1500"),
                    cwd=tmp_path)
    wait_for(run_dir, when, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    before = events(run_dir)
    done_before = set(epoch_counts(before))
    # a torn last line, as if the kill landed mid-write
    with open(run_dir / "events.jsonl", "a") as f:
        f.write('{"v":1,"event":"batch","sta')
    proc = tuiprune("run", "--resume", str(run_dir), cwd=tmp_path)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    evs = events(run_dir)
    assert evs[-1]["status"] == "completed"
    assert epoch_counts(evs) == {(s, e): 1 for s in range(3) for e in range(2)}
    assert done_before <= set(epoch_counts(evs))
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    assert all(json.loads(ln) for ln in lines)  # the torn line was cut before appending


def test_nan_loss_fails_with_state_epoch_batch_and_keeps_the_checkpoint(tmp_path):
    run_dir = tmp_path / "nan"
    proc = tuiprune("run", "demo", "--run-dir", str(run_dir),
                    *sets("prune.method='rsst'", "train.optimizer='sgd'", "train.lr=0.05",
                          "rsst.schedule='exp'", "rsst.reg_granularity=2.0",
                          "rsst.reg_ceiling=1e30"), cwd=tmp_path)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, out
    evs = events(run_dir)
    assert evs[-1]["event"] == "run_ended" and evs[-1]["status"] == "failed"
    err = of(evs, "error")[-1]
    assert "state 1, epoch" in err["message"] and "batch" in err["message"]
    assert any("stability limit" in w["message"] for w in of(evs, "warning"))
    ck = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    assert ck["state"] == 1 and all(torch.isfinite(v).all() for v in ck["model"].values()
                                    if v.is_floating_point())
    assert "Traceback" not in out


def test_resume_refuses_a_completed_run_and_a_running_one(four_runs, tmp_path):
    run_dir = four_runs["refill", "global"]
    with pytest.raises(UserError, match="already completed"):
        run_main(None, [], resume=run_dir)
    # a live engine recorded in engine.pid (this test process stands in for it)
    live = tmp_path / "live"
    live.mkdir()
    (live / "config.toml").write_text((run_dir / "config.toml").read_text())
    (live / "events.jsonl").write_text("")
    from engine.pidfile import write_pidfile

    write_pidfile(live)
    with pytest.raises(UserError, match="is still running"):
        run_main(None, [], resume=live)


def _cli(tmp_path, *args, env=None):
    return subprocess.run([sys.executable, "-m", "tuiprune", *args], capture_output=True,
                          text=True, cwd=tmp_path, timeout=300,
                          env=dict(os.environ, **(env or {})))


@pytest.mark.parametrize("overrides, expected", [
    (["data.dataset='cifar10'", "data.root='nowhere'"],
     "cifar10 not found: looked for"),
    (["model.pretrained=true", "model.pretrained_path='missing.safetensors'"],
     "model.pretrained_path: file not found"),
    (["model.pretrained=true"], "could not fetch pretrained weights"),
    (["model.name='vit_smal_patch16_224'"], "is not a timm model"),
])
def test_setup_errors_are_one_line_and_leave_no_run_behind(tmp_path, overrides, expected):
    proc = _cli(tmp_path, "run", "demo", *sets("run.output_dir='out'", *overrides),
                env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert expected in proc.stderr and "Traceback" not in proc.stderr
    assert "Set data.download = true" in proc.stderr or "cifar" not in expected
    assert "random weights" in proc.stderr or "fetch" not in expected
    # output_dir is checked (created) before anything heavy; no run directory is made in it
    assert not any((tmp_path / "out").iterdir())


def test_dry_run_prints_config_and_structure(tmp_path):
    proc = _cli(tmp_path, "run", "demo", "--dry-run", *sets())
    assert proc.returncode == 0, proc.stderr
    assert "[prune]" in proc.stdout and "prunable structure" in proc.stdout
    # TINY: 3 blocks of width 32 with 4 heads and 128 neurons; prunable weights per block:
    # qkv 96·32 + proj 32·32 + fc1 128·32 + fc2 32·128
    per_block = 96 * 32 + 32 * 32 + 128 * 32 + 32 * 128
    all_row = next(ln for ln in proc.stdout.splitlines() if "│   all │" in ln)
    assert [c.strip() for c in all_row.split("│")[1:-1]] == ["all", "12", "", "384",
                                                             f"{3 * per_block:,}"]
    # ratios 0.3 compound on what is alive: int(12 × 0.7) = 8, int(8 × 0.7) = 5 heads;
    # int(384 × 0.7) = 268, int(268 × 0.7) = 187 neurons
    assert "after pruning step 0 (global): 8 of 12 heads and 268 of 384 neurons kept" \
        in proc.stdout
    assert "after pruning step 1 (global): 5 of 12 heads and 187 of 384 neurons kept" \
        in proc.stdout
    assert not (tmp_path / "runs").exists()
