"""A live run under the dashboard: ``tuiprune watch CONFIG`` starts the real engine in the
background; ``q`` leaves it running; a second ``tuiprune watch RUN_DIR`` shows it again."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from engine.pidfile import engine_alive, request_stop
from helpers.dash import ROOT
from helpers.tmux import TUIPRUNE, Tmux

pytestmark = pytest.mark.slow

# A tiny real ViT on the synthetic data, with enough batches that the run lasts well beyond
# the test's looking at it (the test stops it at the end).
SETS = ["run.device='cpu'", "run.seed=0", "run.name='live'",
        "model.name='vit_tiny_patch16_224'", "model.img_size=32",
        "model.kwargs={patch_size=8, embed_dim=32, depth=3, num_heads=4}",
        "data.dataset='synthetic'", "data.train_size=20000", "data.test_size=200",
        "data.batch_size=50", "train.epochs=3", "prune.states=3", "prune.method='rsst'"]


def batch_of(screen: str):
    match = re.search(r"batch (\d+)/(\d+)", screen)
    return int(match.group(1)) if match else None


def test_watch_starts_a_run_q_leaves_it_and_watch_run_dir_shows_it(tmp_path):
    sets = " ".join(f'--set "{s}"' for s in SETS + [f"run.output_dir='{tmp_path}'"])
    first = Tmux(tmp_path)
    run_dir = None
    try:
        first.start(f"{TUIPRUNE} watch {ROOT / 'configs' / 'demo.toml'} {sets}")
        screen = first.wait_screen(lambda s: "RUNNING" in s and batch_of(s) is not None,
                                   timeout=90)
        seen = batch_of(screen)
        first.wait_screen(lambda s: batch_of(s) not in (None, seen), timeout=30)  # it moves
        first.keys("q")
        assert first.wait_exit() == 0
        out = first.screen(joined=True)
        match = re.search(r"Re-attach with: tuiprune watch (\S+)", out)
        assert match, out
        run_dir = Path(match.group(1))
        assert run_dir.parent == tmp_path and (run_dir / "events.jsonl").exists()
        assert engine_alive(run_dir) is True  # quitting the dashboard left the engine running
    finally:
        first.close()

    second = Tmux(tmp_path / "again")
    (tmp_path / "again").mkdir()
    try:
        second.start(f"{TUIPRUNE} watch {run_dir}")
        screen = second.wait_screen(lambda s: "RUNNING" in s and batch_of(s) is not None,
                                    timeout=30)
        assert "tuiprune  live" in screen and "States [0" in screen
        second.keys("q")
        assert second.wait_exit() == 0
    finally:
        second.close()
        request_stop(run_dir)
        deadline = time.monotonic() + 60
        while engine_alive(run_dir) and time.monotonic() < deadline:
            time.sleep(0.2)
    assert not engine_alive(run_dir)
    assert '"status":"stopped"' in (run_dir / "events.jsonl").read_text().splitlines()[-1]
