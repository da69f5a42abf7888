"""Run-loop benchmarks (issue 3): engine overhead and training throughput.

    .venv/bin/python bench/bench_runs.py [--quick] [--device cpu|cuda]

1. Overhead: the engine's training loop (masks applied, events written, throttled syncs; RSST
   also squeezing) against a plain PyTorch loop (forward, loss, backward, step) over the same
   model size and the same on-device batches. Interleaved repetitions, median ratio.
   Targets: ≤ 1.05 (Refill) and ≤ 1.10 (RSST).
2. Throughput: images/s of the engine against a research-code-style loop on ViT-S at 32×32
   (patch 4): fp32, a CPU DataLoader with 2 workers decoding and augmenting PIL images, and a
   host sync (``loss.item()``) every step. On a GPU the engine also uses bf16 autocast.
   Target on an H100: ≥ 10×.
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
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.config import load_config  # noqa: E402
from engine.data import synthetic  # noqa: E402
from engine.runner import Run  # noqa: E402
from engine.transitions import prune_step  # noqa: E402

SMALL = ["model.name='vit_tiny_patch16_224'", "model.img_size=32",
         "model.kwargs={patch_size=4, embed_dim=128, depth=4, num_heads=4}",
         "data.dataset='synthetic'", "data.test=false", "prune.states=3",
         "train.optimizer='sgd'", "train.lr=0.01", "run.checkpoint_minutes=0"]


def make_run(tmp: Path, device: str, overrides, method: str) -> Run:
    cfg = load_config("demo", [*SMALL, f"run.device='{device}'", f"prune.method='{method}'",
                               *overrides])
    run = Run(cfg, tmp / method)
    run._setup()
    run._open_log()
    return run


def time_engine_epoch(run: Run) -> float:
    """Seconds of one training epoch of the engine loop (evaluation/checkpoint excluded)."""
    run.epoch, run.batch = 0, 0
    finish = run._finish_epoch
    run._finish_epoch = lambda *a: None
    try:
        t = time.perf_counter()
        run._train_epoch()
        _sync(run.device)
        return time.perf_counter() - t
    finally:
        run._finish_epoch = finish


def time_plain_epoch(model: nn.Module, opt, source, device, seed: int) -> float:
    """Seconds of one epoch of the plainest PyTorch loop over the same batches."""
    model.train()
    t = time.perf_counter()
    for x, y in source.batches(seed):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return time.perf_counter() - t


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def overhead(device: str, reps: int, train_size: int) -> bool:
    """Print the engine/plain ratios; True when both targets are met."""
    print(f"== overhead: engine loop vs plain loop ({device}, {reps} interleaved reps) ==")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("refill", "rsst"):
            run = make_run(Path(tmp), device, [f"data.train_size={train_size}"], method)
            step = prune_step(run.model, rate=0.3, head_ratio=0.3, mlp_ratio=0.3)
            plain_model = copy.deepcopy(run.model)  # dense twin: no masks, no hooks
            if method == "refill":
                from engine.pruning import apply_masks

                apply_masks(run.model, step.m_s)
            else:
                run.target = step.m_s
            run._prepare_state()
            plain_opt = torch.optim.SGD(plain_model.parameters(), lr=0.01, momentum=0.9)
            time_engine_epoch(run)  # warm-up both
            time_plain_epoch(plain_model, plain_opt, run.data.train, run.device, 0)
            ratios, eng, pln = [], [], []
            for r in range(reps):
                e = time_engine_epoch(run)
                p = time_plain_epoch(plain_model, plain_opt, run.data.train, run.device, r)
                ratios.append(e / p)
                eng.append(e)
                pln.append(p)
            target = 1.05 if method == "refill" else 1.10
            med = statistics.median(ratios)
            print(f"{method:6s}: engine {statistics.median(eng):.3f}s  plain "
                  f"{statistics.median(pln):.3f}s per epoch ({len(run.data.train)} batches of "
                  f"{run.cfg['data']['batch_size']}); ratio median {med:.3f} "
                  f"(min {min(ratios):.3f}, max {max(ratios):.3f}); target <= {target} "
                  f"{'OK' if med <= target else 'MISSED'}")
            run.log.close()
            ok = ok and med <= target
    return ok


class _PilDataset(torch.utils.data.Dataset):
    """CIFAR the way torchvision serves it: PIL images, transforms in the worker."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        from torchvision import transforms

        self.images = images.permute(0, 2, 3, 1).numpy()
        self.labels = labels.tolist()
        self.tf = transforms.Compose([
            transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))])

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        return self.tf(Image.fromarray(self.images[i])), self.labels[i]


def throughput(device: str, batches: int, batch_size: int) -> None:
    import timm

    dev = torch.device(device)
    print(f"== throughput: ViT-S/4 at 32x32, {batches} steps of {batch_size} ({device}) ==")
    n = batches * batch_size
    x, y = synthetic(n, seed=0)
    # research-code style: fp32, DataLoader(2 workers), loss.item() every step
    model = timm.create_model("vit_small_patch16_224", img_size=32, patch_size=4,
                              num_classes=10).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = torch.utils.data.DataLoader(_PilDataset(x, y), batch_size=batch_size,
                                         shuffle=True, num_workers=2, drop_last=True)
    model.train()
    t = None
    seen = 0
    for i, (xb, yb) in enumerate(loader):
        if i == 1:  # skip the first (worker start-up, warm-up)
            t, seen = time.perf_counter(), 0
        xb, yb = xb.to(dev), yb.to(dev)
        loss = nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()
        seen += len(yb)
    research = seen / (time.perf_counter() - t)
    del model, opt, loader

    with tempfile.TemporaryDirectory() as tmp:
        cfg_over = ["model.name='vit_small_patch16_224'", "model.img_size=32",
                    "model.kwargs={patch_size=4}", f"data.train_size={int(n / 0.9) + 1}",
                    f"data.batch_size={batch_size}", "data.test=false",
                    f"train.amp={'true' if dev.type == 'cuda' else 'false'}",
                    "run.checkpoint_minutes=0", f"run.device='{device}'",
                    "train.optimizer='sgd'"]
        cfg = load_config("demo", cfg_over)
        run = Run(cfg, Path(tmp) / "tp")
        run._setup()
        run._open_log()
        run._prepare_state()
        time_engine_epoch(run)  # warm-up epoch
        sec = time_engine_epoch(run)
        engine = run.data.train.num_samples / sec
        run.log.close()
    print(f"research-style loop: {research:8.1f} img/s")
    print(f"tuiprune engine:     {engine:8.1f} img/s   ratio {engine / research:.2f}x")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--only", choices=("overhead", "throughput"))
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    ok = True
    if args.only in (None, "overhead"):
        ok = overhead(args.device, reps=3 if args.quick else 7,
                      train_size=1200 if args.quick else 3000)
    if args.only in (None, "throughput"):
        throughput(args.device, batches=4 if args.quick else 12,
                   batch_size=64 if args.device == "cpu" else 512)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
