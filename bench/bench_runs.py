"""Run-loop overhead (issue 3): the engine's training loop against a plain PyTorch loop.

    .venv/bin/python bench/bench_runs.py [--quick] [--device cpu|cuda] [--threads N]

The engine's loop — ``engine.train.Trainer`` stepping under ``engine.epoch.EpochLoop`` (masks
applied, throttled ``batch``/``lambda`` events written to a real event log, the NaN watch, the
per-step learning rate, the data-wait clock; in an RSST state the regulariser squeezing a
second 30 %/30 % target) — against the plainest loop (forward, cross-entropy, zero_grad,
backward, SGD step) on a dense twin of the same model over the same on-device batches. The
demo's model (ViT 4 × 4 heads, width 128, patch 4 at 32 px), synthetic data, batch 128; one
warm-up epoch each, then interleaved epochs; the median ratio is the figure. Targets: ≤ 1.05
(Refill), ≤ 1.10 (RSST). Exit status 1 when one is missed. The loops are those of
``bench/loops.py``; training speed on a GPU (and the research-style loop) is
``bench/bench_gpu.py``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine import data as data_mod  # noqa: E402
from engine import model as model_mod  # noqa: E402
from engine.config import load_config  # noqa: E402
from engine.events import EventLog  # noqa: E402
from loops import EngineLoop, PlainLoop, state_masks, sync  # noqa: E402

SMALL = ["model.name='vit_tiny_patch16_224'", "model.img_size=32",
         "model.kwargs={patch_size=4, embed_dim=128, depth=4, num_heads=4}",
         "data.dataset='synthetic'", "data.test=false", "train.optimizer='sgd'",
         "train.lr=0.01", "train.schedule='constant'", "run.checkpoint_minutes=0"]
TARGETS = {"refill": 1.05, "rsst": 1.10}


def epoch_seconds(loop, batches: int, device: torch.device) -> float:
    sync(device)
    t = time.perf_counter()
    loop.steps(batches)
    sync(device)
    return time.perf_counter() - t


def overhead(device: str, reps: int, train_size: int) -> bool:
    """Print the engine/plain ratios; True when both targets are met."""
    print(f"== overhead: engine loop vs plain loop ({device}, {reps} interleaved reps) ==")
    cfg = load_config("demo", [*SMALL, f"run.device='{device}'",
                               f"data.train_size={train_size}"])
    dev = torch.device(device)
    torch.manual_seed(0)
    base, _, _ = model_mod.build(cfg, 10)
    base.to(dev)
    mean, std = model_mod.normalization(base)
    source = data_mod.load(cfg, dev, model_mod.input_size(base), mean, std).train
    masks, target = state_masks(base)
    t, nb, ok = cfg["train"], len(source), True
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("refill", "rsst"):
            log = EventLog(Path(tmp) / f"{method}.jsonl")
            engine = EngineLoop(copy.deepcopy(base), source, t, dev, None, masks,
                                target if method == "rsst" else None, log)
            plain = PlainLoop(copy.deepcopy(base), source, t, dev, None, compiled=False)
            epoch_seconds(engine, nb, dev)  # warm-up both
            epoch_seconds(plain, nb, dev)
            eng, pln = [], []
            for r in range(reps):
                pair = [(engine, eng), (plain, pln)]
                for loop, times in (pair if r % 2 == 0 else pair[::-1]):
                    times.append(epoch_seconds(loop, nb, dev))
            log.close()
            ratios = [e / p for e, p in zip(eng, pln)]
            med = statistics.median(ratios)
            print(f"{method:6s}: engine {statistics.median(eng):.3f}s  plain "
                  f"{statistics.median(pln):.3f}s per epoch ({nb} batches of "
                  f"{source.batch_size}); ratio median {med:.3f} (min {min(ratios):.3f}, max "
                  f"{max(ratios):.3f}); target <= {TARGETS[method]} "
                  f"{'OK' if med <= TARGETS[method] else 'MISSED'}")
            ok = ok and med <= TARGETS[method]
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, less data")
    ap.add_argument("--threads", type=int, help="torch intra-op threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    ok = overhead(args.device, reps=3 if args.quick else 7,
                  train_size=1200 if args.quick else 3000)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
