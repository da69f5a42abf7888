"""Shared helpers for tests that start real runs: a tiny config and event-log readers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parents[2]

# A real timm ViT small enough that a 3-state run takes seconds on 2 CPU cores.
TINY = [
    "run.device='cpu'", "run.seed=0",
    "model.name='vit_tiny_patch16_224'", "model.img_size=32",
    "model.kwargs={patch_size=8, embed_dim=32, depth=3, num_heads=4}",
    "data.dataset='synthetic'", "data.train_size=300", "data.test_size=60",
    "data.batch_size=50", "train.epochs=2", "train.optimizer='adamw'", "train.lr=0.003",
    "prune.states=3", "prune.rate=0.3", "prune.head_ratio=0.3", "prune.mlp_ratio=0.3",
    "prune.rewind='init'",
]


def overrides(*extra: str) -> List[str]:
    """TINY plus ``extra`` as ``section.key=value`` strings."""
    return [*TINY, *extra]


def sets(*extra: str) -> List[str]:
    """``--set`` arguments for TINY plus ``extra``."""
    return [a for s in overrides(*extra) for a in ("--set", s)]


def events(run_dir: Path) -> List[dict]:
    out = []
    for line in (Path(run_dir) / "events.jsonl").read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def of(evs: List[dict], kind: str) -> List[dict]:
    return [e for e in evs if e["event"] == kind]


def epoch_counts(evs: List[dict]) -> Counter:
    return Counter((e["state"], e["epoch"]) for e in of(evs, "epoch_ended"))


def tuiprune(*args, cwd: Path, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "tuiprune", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def wait_for(run_dir: Path, predicate, proc: subprocess.Popen, timeout: float = 180) -> dict:
    """Poll the event log until an event satisfies ``predicate``; return it."""
    deadline = time.time() + timeout
    path = Path(run_dir) / "events.jsonl"
    while time.time() < deadline:
        if path.exists():
            for ev in events(run_dir):
                if predicate(ev):
                    return ev
        if proc.poll() is not None:
            raise AssertionError(f"engine exited ({proc.returncode}) before the awaited event:"
                                 f"\n{proc.stdout.read()}")
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    raise AssertionError("timed out waiting for an event")
