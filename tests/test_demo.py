"""The demo's promise (issue 3): offline, CPU, real learning and pruning, final-state
validation accuracy ≥ 60 % after the last hard cut. (Its duration is checked by hand and in
the README, not here: timing targets do not belong in unit tests.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.runs import events, of
from tuiprune.run_command import run_main

pytestmark = pytest.mark.slow


def test_demo_learns_and_prunes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "demo"
    assert run_main(Path("demo"), [], run_dir=run_dir) == 0
    evs = events(run_dir)
    assert evs[-1]["status"] == "completed"
    started = evs[0]
    assert started["data"]["dataset"] == "synthetic" and started["device"] == "cpu"
    assert started["model"]["blocks"] >= 4 and min(started["model"]["heads_per_block"]) >= 4
    assert started["method"] == "rsst" and started["sorting"] == "global"
    assert [p["state"] for p in of(evs, "pruned")] == [0, 1]
    cuts = of(evs, "hard_cut")
    assert [c["state"] for c in cuts] == [1, 2]
    final = of(evs, "state_ended")[-1]
    assert final["state"] == 2 and final["final_val_acc"] >= 60.0
    assert final["sparsity"] == cuts[-1]["sparsity"] > 40.0
    first_epoch = of(evs, "epoch_ended")[0]
    assert first_epoch["train_acc"] < final["final_val_acc"]  # it learned
