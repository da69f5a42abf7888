"""Does compaction pay? Dense vs compacted ViT-S/16 latency at 224 px (a benchmark, not a test).

For each pruning level (default 30 %/30 % and 50 %/50 % of heads/neurons, ranked globally by
magnitude, as the engine does) the dense model is masked with the engine's own masks and then
compacted (:func:`engine.compact.compact`); the compacted output is checked against the masked
one. Latency: eval mode, ``torch.inference_mode``, threads pinned with ``torch.set_num_threads``,
one fixed random batch, every repetition times each model once in alternating order
(interleaved), the median is reported. Targets from issue 5 (batch 8, CPU): 30 %/30 % ≥ 1.30×,
50 %/50 % ≥ 1.6× faster than dense. Exit status 1 when a target is missed.

    .venv/bin/python bench/bench_compact.py [--threads N] [--reps R] [--batches 1 8]
        [--levels 0.3 0.5] [--device cpu|cuda] [--json results.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGETS = {0.3: 1.30, 0.5: 1.6}       # batch-8 CPU speed-up the issue asks for
TARGET_BATCH = 8


def build(levels, seed: int):
    import torch

    from engine import compact as C
    from engine import measure as M
    from engine.checkpoint import build_model
    from engine.pruning import apply_masks, elementwise_masks, structured_masks

    spec = {"name": "vit_small_patch16_224", "kwargs": {}}
    torch.manual_seed(seed)
    dense = build_model(spec).eval()
    models = {"dense": dense}
    rows = {"dense": {"params": M.count_params(dense), "macs": M.count_macs(dense),
                      "heads": C.Kept.everything(dense).heads_kept,
                      "neurons": C.Kept.everything(dense).neurons_kept, "max_abs_diff": 0.0}}
    for level in levels:
        masks = structured_masks(dense, elementwise_masks(dense, rate=level), head_ratio=level,
                                 mlp_ratio=level, sorting="global", criterion="magnitude")
        ref = copy.deepcopy(dense)
        apply_masks(ref, masks)
        small = C.compact(ref, masks).eval()
        kept = C.kept_from_masks(dense, masks)
        name = f"{level:.0%}/{level:.0%}"
        models[name] = small
        rows[name] = {"level": level, "params": M.count_params(small),
                      "macs": M.count_macs(small), "heads": kept.heads_kept,
                      "neurons": kept.neurons_kept, "max_abs_diff": M.max_abs_diff(ref, small),
                      "per_block_heads": [len(b.heads_kept) for b in kept.blocks]}
    return models, rows


def check_targets(rows, timings) -> int:
    """Print each level's batch-8 speed-up against its target; 1 when one is missed."""
    if TARGET_BATCH not in timings:
        return 0
    print()
    status = 0
    base = timings[TARGET_BATCH]["dense"]["median_ms"]
    for name, r in rows.items():
        target = TARGETS.get(r.get("level"))
        if target is None:
            continue
        speedup = base / timings[TARGET_BATCH][name]["median_ms"]
        ok = speedup >= target
        status |= 0 if ok else 1
        print(f"{name}: batch {TARGET_BATCH} speed-up {speedup:.2f}× "
              f"(target ≥ {target:.2f}×, MAC ratio {rows['dense']['macs'] / r['macs']:.2f}×) "
              f"{'OK' if ok else 'MISSED'}")
    return status


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="torch.set_num_threads (default: all cores)")
    ap.add_argument("--reps", type=int, default=15, help="timed repetitions per model")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, TARGET_BATCH])
    ap.add_argument("--levels", type=float, nargs="+", default=sorted(TARGETS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    import timm
    import torch

    from engine.measure import cpu_name, time_models

    torch.set_num_threads(args.threads)
    models, rows = build(args.levels, args.seed)
    where = (torch.cuda.get_device_name(0) if args.device.startswith("cuda")
             else f"{cpu_name()}, {torch.get_num_threads()} threads of {os.cpu_count()} cores")
    print(f"ViT-S/16 224 px · {args.device} ({where}) · torch {torch.__version__} · "
          f"timm {timm.__version__} · median of {args.reps} interleaved repetitions "
          f"after {args.warmup} warm-up passes")
    dense = rows["dense"]
    print(f"\n{'model':>8} {'heads':>6} {'neurons':>8} {'params':>12} {'MACs/img':>15} "
          f"{'MAC ×':>6} {'max|Δ|':>9}")
    for name, r in rows.items():
        print(f"{name:>8} {r['heads']:>6} {r['neurons']:>8} {r['params']:>12,} "
              f"{r['macs']:>15,} {dense['macs'] / r['macs']:>6.2f} {r['max_abs_diff']:>9.1e}")

    timings = {}
    for batch in args.batches:
        t = time_models(models, batch, reps=args.reps, warmup=args.warmup, device=args.device)
        timings[batch] = t
        base = t["dense"]["median_ms"]
        print(f"\nbatch {batch}: " + " · ".join(
            f"{n} {v['median_ms']:.1f} ms (min {v['min_ms']:.1f})"
            + ("" if n == "dense" else f" = {base / v['median_ms']:.2f}×")
            for n, v in t.items()))

    status = check_targets(rows, timings) if args.device == "cpu" else 0
    if args.json:
        args.json.write_text(json.dumps({
            "device": args.device, "where": where, "threads": torch.get_num_threads(),
            "reps": args.reps, "warmup": args.warmup, "torch": torch.__version__,
            "models": rows,
            "latency": {str(b): t for b, t in timings.items()}}, indent=1) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
