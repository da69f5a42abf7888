"""Engine speed (a benchmark, not a test): structured-mask time and the per-step cost of masks
plus the RSST regulariser.

(a) ``structured_masks`` (magnitude, global, ratios 0.3/0.3, on an element-wise mask of rate
    0.3) on ViT-S/16 and ViT-B/16 at random init: warm-up calls, then the median of the timed
    calls. Targets from issue 2 (2-core CPU): ViT-S ≤ 50 ms, ViT-B ≤ 150 ms.
(b) One training step (forward, cross-entropy, backward, SGD momentum + weight decay) of a small
    ViT on CPU with a hard mask applied and the RSST regulariser squeezing the next step's
    target, against a plain PyTorch step of an identical dense model, same batch, one process.
    Repetitions interleave the two (alternating order); the ratio of the medians is reported.
    Target: ≤ 1.08×.
(c) No host/device synchronisation per step: the per-step code (RSSTRegularizer.step, the mask
    hooks: ``engine.pruning.masks.PER_STEP_CODE``) is scanned for ``.item()``/``.cpu()``/numpy/
    ``print``, and one step runs with those Tensor methods trapped.

    .venv/bin/python bench/bench_engine.py [--threads N] [--reps R] [--steps S] [--json out.json]

Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MASK_TARGETS_MS = {"vit_small_patch16_224": 50.0, "vit_base_patch16_224": 150.0}
STEP_TARGET = 1.08
SMALL_VIT = dict(img_size=32, patch_size=4, embed_dim=192, depth=6, num_heads=3, num_classes=10)
SYNC_CALLS = ("item", "cpu", "numpy", "tolist", "__bool__", "__float__", "__int__", "__index__")


def bench_masks(name: str, reps: int, warmup: int = 2) -> dict:
    import timm
    import torch

    from engine.pruning import elementwise_masks, structured_masks

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    m_e = elementwise_masks(model, rate=0.3)
    run = lambda: structured_masks(model, m_e, head_ratio=0.3, mlp_ratio=0.3,  # noqa: E731
                                   sorting="global", criterion="magnitude")
    for _ in range(warmup):
        run()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        run()
        times.append(1000 * (time.perf_counter() - t))
    return {"model": name, "median_ms": statistics.median(times), "min_ms": min(times),
            "max_ms": max(times), "reps": reps, "target_ms": MASK_TARGETS_MS[name]}


def _step_setup(batch: int, steps: int):
    import torch
    from timm.models.vision_transformer import VisionTransformer

    from engine.pruning import apply_masks, current_masks, elementwise_masks, structured_masks
    from engine.rsst import RSSTRegularizer

    torch.manual_seed(0)
    base = VisionTransformer(**SMALL_VIT).train()
    plain, pruned = copy.deepcopy(base), copy.deepcopy(base)
    # a hard mask from a first pruning step, and the RSST target of the second
    apply_masks(pruned, structured_masks(pruned, elementwise_masks(pruned, 0.3), 0.3, 0.3))
    m_e = elementwise_masks(pruned, 0.3, masks=current_masks(pruned))
    reg = RSSTRegularizer(pruned, structured_masks(pruned, m_e, 0.3, 0.3),
                          ramp_steps=steps, reg_granularity=1.0)
    opts = {id(m): torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
            for m in (plain, pruned)}
    x = torch.randn(batch, 3, SMALL_VIT["img_size"], SMALL_VIT["img_size"])
    y = torch.randint(0, SMALL_VIT["num_classes"], (batch,))
    return plain, pruned, reg, opts, x, y


def _train_step(model, opt, x, y, reg=None) -> None:
    import torch

    opt.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    if reg is not None:
        reg.step()
    opt.step()


def bench_step(reps: int, batch: int, warmup: int = 3) -> dict:
    plain, pruned, reg, opts, x, y = _step_setup(batch, reps + warmup)
    runs = {"plain": lambda: _train_step(plain, opts[id(plain)], x, y),
            "masked+rsst": lambda: _train_step(pruned, opts[id(pruned)], x, y, reg)}
    for _ in range(warmup):
        for fn in runs.values():
            fn()
    times = {k: [] for k in runs}
    for i in range(reps):
        order = list(runs) if i % 2 == 0 else list(reversed(runs))
        for k in order:
            t = time.perf_counter()
            runs[k]()
            times[k].append(1000 * (time.perf_counter() - t))
    med = {k: statistics.median(v) for k, v in times.items()}
    pairs = [b / a for a, b in zip(times["plain"], times["masked+rsst"])]
    return {"model": SMALL_VIT, "batch": batch, "reps": reps,
            "plain_median_ms": med["plain"], "rsst_median_ms": med["masked+rsst"],
            "ratio_of_medians": med["masked+rsst"] / med["plain"],
            "median_of_paired_ratios": statistics.median(pairs),
            "lambda_last": reg.value, "regularized_weights": reg.regularized,
            "target_ratio": STEP_TARGET}


def check_no_sync() -> dict:
    """Static scan of the per-step code, then one step with the sync calls trapped."""
    import torch

    from engine.pruning.masks import PER_STEP_CODE
    from engine.rsst import RSSTRegularizer

    per_step = [RSSTRegularizer.step, *PER_STEP_CODE]
    pattern = re.compile(r"\.item\(|\.cpu\(|\.numpy\(|\.tolist\(|\bnumpy\b|\bnp\.|print\(")
    found = [f"{fn.__qualname__}: {line.strip()}" for fn in per_step
             for line in inspect.getsource(fn).splitlines()
             if pattern.search(line.split("#")[0]) and not line.strip().startswith(('"', "'"))]

    plain, pruned, reg, opts, x, y = _step_setup(4, 10)
    calls, saved = [], {n: getattr(torch.Tensor, n) for n in SYNC_CALLS}

    def trap(name):
        def raiser(*args, **kwargs):
            calls.append(name)
            return saved[name](*args, **kwargs)
        return raiser

    loss = torch.nn.functional.cross_entropy(pruned(x), y)  # forward outside: timm may sync
    opt = opts[id(pruned)]
    opt.zero_grad(set_to_none=True)
    try:
        for n in SYNC_CALLS:
            setattr(torch.Tensor, n, trap(n))
        loss.backward()
        reg.step()
        opt.step()
    finally:
        for n, fn in saved.items():
            setattr(torch.Tensor, n, fn)
    return {"static_hits": found, "trapped_calls": calls, "ok": not found and not calls}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads "
                    "(default: torch's own choice)")
    ap.add_argument("--reps", type=int, default=11, help="timed structured_masks calls")
    ap.add_argument("--steps", type=int, default=30, help="timed training steps per variant")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import timm
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    env = {"python": platform.python_version(), "torch": torch.__version__,
           "timm": timm.__version__, "cpu": platform.processor() or platform.machine(),
           "cores": os.cpu_count(), "threads": torch.get_num_threads(),
           "loadavg_before": os.getloadavg()}
    print(f"engine bench: torch {env['torch']}, timm {env['timm']}, {env['cores']} cores, "
          f"{env['threads']} threads, load average {env['loadavg_before'][0]:.2f}")

    ok = True
    results = {"env": env, "structured_masks": [], "train_step": None, "sync": None}
    for name in MASK_TARGETS_MS:
        r = bench_masks(name, args.reps)
        results["structured_masks"].append(r)
        hit = r["median_ms"] <= r["target_ms"]
        ok &= hit
        print(f"structured_masks magnitude/global {name:<22} median {r['median_ms']:7.1f} ms "
              f"(min {r['min_ms']:.1f}, max {r['max_ms']:.1f}, {r['reps']} runs)  "
              f"target ≤ {r['target_ms']:.0f} ms  {'ok' if hit else 'MISSED'}")

    r = bench_step(args.steps, args.batch)
    results["train_step"] = r
    hit = r["ratio_of_medians"] <= STEP_TARGET
    ok &= hit
    print(f"train step, small ViT (width 192, depth 6, 65 tokens), batch {r['batch']}: plain "
          f"{r['plain_median_ms']:.1f} ms, masks+RSST {r['rsst_median_ms']:.1f} ms → "
          f"{r['ratio_of_medians']:.3f}× (median of paired ratios "
          f"{r['median_of_paired_ratios']:.3f}×, {r['reps']} interleaved reps, "
          f"{r['regularized_weights']:,} weights squeezed)  target ≤ {STEP_TARGET}×  "
          f"{'ok' if hit else 'MISSED'}")

    r = check_no_sync()
    results["sync"] = r
    ok &= r["ok"]
    print(f"per-step host sync: static scan {r['static_hits'] or 'clean'}, trapped calls during "
          f"backward + RSST step + optimizer step: {r['trapped_calls'] or 'none'}  "
          f"{'ok' if r['ok'] else 'MISSED'}")
    env["loadavg_after"] = os.getloadavg()
    print(f"load average after: {env['loadavg_after'][0]:.2f} (other processes share this "
          f"machine; timings are medians)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
