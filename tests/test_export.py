"""``tuiprune export``: compacted model files, measured export.json, bad input.

Run directories are built here with checkpoints in the engine's documented format
(``{"format", "kind", "model", "masks", "model_spec", "state", "epoch", "val_acc"}``) on a
small ViT, so the test stays fast; ``TUIPRUNE_EXPORT_REPS`` cuts the timed repetitions.
export.json's sizes are checked against tensors counted in the files written and against the
arithmetic of the model's shapes, never against the functions that produced them.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers.compact import HID, H, X, hand_masks, make_model, out, vit_macs, vit_params
from safetensors import safe_open

from engine import artifact as A
from engine import compact as C
from engine.errors import UserError
from engine.pruning import apply_masks
from engine.rundir import EXPORT_FILE
from tuiprune import export as E

MASKS = dict(heads={0: [1, 3], 1: [0, 1, 2, 3]}, neurons={0: list(range(0, HID, 2)),
                                                          2: list(range(HID))})


def write_ckpt(path: Path, model, masks, state: int, kind="best", val_acc=41.5):
    m = copy.deepcopy(model)
    if masks is not None:
        apply_masks(m, masks)
    torch.save({"format": 1, "kind": kind, "model": m.state_dict(),
                "masks": None if masks is None else {k: v.clone() for k, v in masks.items()},
                "model_spec": model.model_spec, "state": state, "epoch": 1,
                "val_acc": val_acc}, path)
    return m


@pytest.fixture
def interrupted_run(tmp_path, monkeypatch):
    """States 0 and 1 finished, state 2 was killed: no state2_best.pt."""
    monkeypatch.setenv("TUIPRUNE_EXPORT_REPS", "2")
    run = tmp_path / "run-20260101-000000"
    (run / "checkpoints").mkdir(parents=True)
    model = make_model()
    write_ckpt(run / "checkpoints" / "state0_best.pt", model, None, 0, val_acc=30.0)
    masks = hand_masks(model, **MASKS)
    ref = write_ckpt(run / "checkpoints" / "state1_best.pt", model, masks, 1)
    write_ckpt(run / "checkpoints" / "latest.pt", model, masks, 2, kind="latest")
    return run, ref.eval()


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def leftovers(parent: Path):
    return sorted(p.name for p in parent.iterdir() if ".partial-" in p.name or ".old-" in p.name)


def test_export_of_an_interrupted_run(interrupted_run):
    run, ref = interrupted_run
    assert E.export_main(run) == 0
    out_dir = run / "export-state1"
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        [EXPORT_FILE, A.WEIGHTS_FILE, A.STRUCTURE_FILE, A.PROGRAM_FILE])
    assert leftovers(run) == []

    loaded = A.load(out_dir)
    assert (out(ref, X) - out(loaded, X)).abs().max().item() < 1e-4
    program = torch.export.load(str(out_dir / A.PROGRAM_FILE)).module()
    assert (out(ref, X) - program(X)).abs().max().item() < 1e-4

    doc = json.loads((out_dir / EXPORT_FILE).read_text())
    assert (doc["state"], doc["checkpoint"], doc["val_acc"]) == (1, "checkpoints/state1_best.pt",
                                                                 41.5)
    # MASKS: block 0 keeps 2 heads and half the neurons, block 1 no head, block 2 no neuron
    kept = [(2, HID // 2), (0, HID), (H, 0)]
    saved = torch.load(run / "checkpoints" / "state1_best.pt", weights_only=True)["model"]
    with safe_open(str(out_dir / A.WEIGHTS_FILE), "pt") as f:
        written = sum(_numel(f.get_slice(k).get_shape()) for k in f.keys())
    assert doc["params"]["before"] == sum(t.numel() for t in saved.values()) == \
        vit_params([(H, HID)] * 3)
    assert doc["params"]["after"] == written == vit_params(kept)
    assert doc["macs"]["before"] == vit_macs([(H, HID)] * 3)
    assert doc["macs"]["after"] == vit_macs(kept)
    s = doc["structure"]
    assert (s["heads_kept"], s["heads_total"]) == (3 * H - 6, 3 * H)
    assert (s["neurons_kept"], s["neurons_total"]) == (3 * HID - HID // 2 - HID, 3 * HID)
    assert [b["heads_kept"] for b in s["blocks"]] == [2, 0, 4]
    assert doc["equivalence"]["max_abs_diff"] < 1e-4
    lat = doc["latency"]
    assert set(lat["cpu"]["batches"]) == {"1", "32"}
    for r in lat["cpu"]["batches"].values():
        assert r["reps"] == 2 and r["before_ms"] > 0 and r["after_ms"] > 0
        assert r["speedup"] == pytest.approx(r["before_ms"] / r["after_ms"])
    assert ("cuda" in lat and "batches" in lat["cuda"]) == torch.cuda.is_available()


def test_export_given_state_and_out(interrupted_run, tmp_path):
    run, _ = interrupted_run
    dest = tmp_path / "deploy" / "vit"
    assert E.export_main(run, state=0, out=dest) == 0
    doc = json.loads((dest / EXPORT_FILE).read_text())
    assert doc["state"] == 0 and doc["params"]["before"] == doc["params"]["after"]
    assert C.kept_of(A.load(dest)) == [(H, HID)] * 3
    # exporting again replaces the earlier export, atomically
    assert E.export_main(run, state=1, out=dest) == 0
    assert json.loads((dest / EXPORT_FILE).read_text())["state"] == 1
    assert leftovers(dest.parent) == []


def test_missing_state_lists_the_available_ones(interrupted_run):
    run, _ = interrupted_run
    with pytest.raises(UserError, match=r"state 2 has no best checkpoint; states available: "
                                        r"0, 1"):
        E.export_main(run, state=2)
    assert not (run / "export-state2").exists() and leftovers(run) == []


def test_run_without_checkpoints(tmp_path):
    run = tmp_path / "fresh"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "latest.pt").write_bytes(b"")
    with pytest.raises(UserError, match="no best checkpoint"):
        E.export_main(run)
    with pytest.raises(UserError, match="no such run directory"):
        E.export_main(tmp_path / "nope")
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints"]


def test_partial_head_mask_is_refused(interrupted_run):
    run, _ = interrupted_run
    model = make_model()
    masks = hand_masks(model, **MASKS)
    masks["blocks.2.attn.proj"][:, 5] = 0                 # one column of head 0 in block 2
    write_ckpt(run / "checkpoints" / "state1_best.pt", model, masks, 1)
    with pytest.raises(UserError, match=r"masks/model mismatch: block 2 head 0 is only partly"):
        E.export_main(run)
    assert not (run / "export-state1").exists() and leftovers(run) == []


def test_nonzero_pruned_weights_are_refused(interrupted_run):
    run, _ = interrupted_run
    model = make_model()
    masks = hand_masks(model, **MASKS)
    torch.save({"format": 1, "kind": "best", "model": model.state_dict(), "masks": masks,
                "model_spec": model.model_spec, "state": 1, "epoch": 1, "val_acc": 1.0},
               run / "checkpoints" / "state1_best.pt")     # masks saved but never applied
    with pytest.raises(UserError, match=r"masks/model mismatch.*not zero"):
        E.export_main(run)
    assert not (run / "export-state1").exists() and leftovers(run) == []


def test_weights_of_another_model_are_refused(interrupted_run):
    run, _ = interrupted_run
    other = make_model(embed_dim=96, num_heads=6)
    ckpt = torch.load(run / "checkpoints" / "state1_best.pt", weights_only=True)
    ckpt["model"] = other.state_dict()
    ckpt["masks"] = None
    torch.save(ckpt, run / "checkpoints" / "state1_best.pt")
    with pytest.raises(UserError, match="saved weights or masks do not fit its model spec"):
        E.export_main(run)
    (run / "checkpoints" / "state1_best.pt").write_bytes(b"torn")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        E.export_main(run)
    assert leftovers(run) == []


def test_failure_midway_leaves_nothing(interrupted_run, monkeypatch):
    run, _ = interrupted_run

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(A, "export_program", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        E.export_main(run)
    assert not (run / "export-state1").exists() and leftovers(run) == []


def test_foreign_directory_is_not_overwritten(interrupted_run, tmp_path):
    run, _ = interrupted_run
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not an earlier export"):
        E.export_main(run, out=dest)
    assert [p.name for p in dest.iterdir()] == ["notes.txt"]


def test_cli_bad_state_is_one_line_and_exit_2(interrupted_run):
    run, _ = interrupted_run
    env = {**os.environ, "TUIPRUNE_EXPORT_REPS": "2"}
    res = subprocess.run([sys.executable, "-m", "tuiprune", "export", str(run), "--state", "7"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"error: {run}: state 7 has no best checkpoint; states available: 0, 1 (pass one of "
        f"them to --state)"]


def test_export_of_a_real_interrupted_run(tmp_path, monkeypatch):
    """An engine-written run cut short in state 2 (its best checkpoint never written)."""
    import shutil

    from engine.checkpoint import load_model

    monkeypatch.setenv("TUIPRUNE_EXPORT_REPS", "1")
    run = tmp_path / "rsst_global"
    shutil.copytree(Path(__file__).parent / "fixtures" / "runs" / "rsst_global", run)
    (run / "checkpoints" / "state2_best.pt").unlink()
    assert E.export_main(run) == 0
    dense, masks, ckpt = load_model(run / "checkpoints" / "state1_best.pt")
    small = A.load(run / "export-state1")
    # what the log says is in force after state 1's hard cut, per block
    cut = next(json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()
               if '"hard_cut"' in x and json.loads(x)["state"] == 1)
    assert C.kept_of(small) == [(l["heads_kept"], l["neurons_kept"]) for l in cut["layers"]]
    x = torch.randn(4, 3, 32, 32)
    assert (out(dense, x) - out(small, x)).abs().max().item() < 1e-4
    doc = json.loads((run / "export-state1" / EXPORT_FILE).read_text())
    assert doc["val_acc"] == ckpt["val_acc"]
    assert doc["params"]["after"] == sum(p.numel() for p in small.state_dict().values())
    assert doc["params"]["before"] - doc["params"]["after"] == cut["zeros"] + sum(
        (l["heads_total"] - l["heads_kept"]) * 3 * 12 + (l["neurons_total"] - l["neurons_kept"])
        for l in cut["layers"])        # pruned weights plus their qkv / fc1 biases
