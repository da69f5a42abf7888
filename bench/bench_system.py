"""What ``engine.system.SystemSampler`` costs a training run (issue 13: <= 0.5 % of step time).

The run loop pays, per step, one :meth:`count` (three float additions) and one :meth:`poll`
that is not due (a clock read and a comparison), and once per ``run.system_seconds`` one
:meth:`sample` (psutil, and NVML or torch on a GPU). Each is timed here on its own (median
of repeated timed batches), and a training step of the demo model (ViT 4 blocks x 4 heads,
width 128, patch 4 at 32 px, batch 128, AdamW) is timed on this machine. The overhead is

    (count + poll) / step  +  sample / system_seconds

reported for the measured step and for a 5 ms step (a fast GPU), at the default interval of
10 s and at 1 s. Exit status 1 when an overhead passes 0.5 %.

    .venv/bin/python bench/bench_system.py [--device cpu|cuda] [--steps 10] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.system import SystemSampler  # noqa: E402

TARGET = 0.005
FAST_STEP_S = 0.005


def per_call(fn, calls: int, reps: int = 7) -> float:
    """Median seconds per call of ``fn`` over ``reps`` timed batches of ``calls`` calls."""
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t) / calls)
    return statistics.median(times)


def step_seconds(device: str, steps: int) -> float:
    import timm
    import torch

    model = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=4,
                              embed_dim=128, depth=4, num_heads=4, num_classes=10).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(128, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (128,), device=device)

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(3):
        step()
    times = []
    for _ in range(steps):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    sampler = SystemSampler(10.0, device=args.device)
    per_step = per_call(lambda: sampler.count(128, 0.01, 0.001), 100_000)
    per_step += per_call(lambda: sampler.poll(0, 0), 100_000)
    sample = per_call(lambda: sampler.sample(0, 0), 200)
    fields = sampler.sample(0, 0)
    print(f"sampler on {args.device}: count + poll (not due) {per_step * 1e9:.0f} ns per step; "
          f"sample {sample * 1e6:.0f} µs ({len(fields.get('gpus', []))} GPU(s); "
          f"unavailable: {fields.get('unavailable')})")
    step = step_seconds(args.device, args.steps)
    print(f"training step, demo ViT, batch 128 on {args.device}: {step * 1e3:.1f} ms (median of "
          f"{args.steps}); torch {torch.__version__}, {torch.get_num_threads()} threads")
    ok = True
    for label, s in ((f"measured step {step * 1e3:.1f} ms", step),
                     (f"a {FAST_STEP_S * 1e3:.0f} ms step (fast GPU)", FAST_STEP_S)):
        for interval in (10.0, 1.0):
            overhead = per_step / s + sample / interval
            ok = ok and overhead <= TARGET
            print(f"  {label}, system_seconds = {interval:g}: overhead {overhead * 100:.4f} % "
                  f"(target <= {TARGET * 100:.1f} %) {'ok' if overhead <= TARGET else 'MISSED'}")
    sampler.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
