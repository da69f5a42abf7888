"""GPU speed (issue 11): the seed experiment's model and data shape, every training loop
variant in one process, interleaved; a table, a JSON file and the projected experiment time.

    .venv/bin/python bench/bench_gpu.py [--device cuda|cpu] [--quick] [--batches 128 512]
        [--compile auto|on|off] [--peak-tflops X] [--rounds R] [--steps S] [--json PATH]

Model: ViT-Small, patch 4, 32×32 input, 10 classes (random init). Data: 50,000 synthetic
CIFAR-shaped uint8 images held on the device (``--quick``: a small ViT and 2,048 images, for
the CPU test). Variants, per batch size:

1. plain PyTorch loop, fp32 (TF32 matmuls on CUDA) — and compiled;
2. the same in bf16 autocast — and compiled;
3. the engine (``Trainer`` + ``EpochLoop``) in a Refill state (masks applied) and in an RSST
   state (masks and regulariser), each fp32 and bf16, with and without ``torch.compile``;
   the RSST bf16 variant once more without events (the cost of the event path);
4. the research code's loop, in its style (``bench/loops.py``), in an RSST state, fp32.

For each: images/s and step time (median over interleaved rounds; the minimum too), peak memory
(CUDA: the variant's own tensors plus its transient peak in a step), FLOPs per step
(``torch.utils.flop_counter.FlopCounterMode``, forward + backward) and MFU = FLOPs per step /
step time / the device's peak (table below, or ``--peak-tflops``). Then evaluation speed and the
projected time of the full experiment: 20 states × 40 epochs of 45,000 training images, plus
5,000 validation and 10,000 test images evaluated each epoch. Exit status 0 (a benchmark: the
issue's targets are printed beside the figures, not enforced).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine.config import load_config  # noqa: E402
from engine.events import EventLog  # noqa: E402
from engine.measure import cpu_name  # noqa: E402
from engine.train import configure_backends  # noqa: E402
from loops import (EngineLoop, PlainLoop, ResearchLoop, device_source, state_masks,  # noqa: E402
                   sync)

# Dense peak TFLOPS (no structured sparsity) from the vendors' data sheets: bf16 and TF32
# tensor cores, plain fp32. First match of the device name wins (specific names first).
PEAK_TFLOPS = [
    ("H100 PCIe", {"bf16": 756.0, "tf32": 378.0, "fp32": 51.0}),
    ("H100", {"bf16": 989.0, "tf32": 494.0, "fp32": 67.0}),      # SXM
    ("H800", {"bf16": 989.0, "tf32": 494.0, "fp32": 67.0}),
    ("H200", {"bf16": 989.0, "tf32": 494.0, "fp32": 67.0}),      # SXM
    ("A100", {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5}),
    ("A800", {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5}),
    ("L40S", {"bf16": 362.0, "tf32": 183.0, "fp32": 91.6}),
    ("L4", {"bf16": 121.0, "tf32": 60.0, "fp32": 30.3}),
]
EXPERIMENT = dict(states=20, epochs=40, train_images=45_000, eval_images=15_000)
TARGETS = dict(engine_img_s=20_000, mfu=0.30, engine_vs_plain=0.95, hours=1.5)
VIT_S = dict(name="vit_small_patch16_224", kwargs=dict(img_size=32, patch_size=4,
                                                      num_classes=10))
VIT_QUICK = dict(name="vit_small_patch16_224",
                 kwargs=dict(img_size=32, patch_size=4, num_classes=10, embed_dim=64, depth=2,
                             num_heads=2))


@dataclass
class Variant:
    name: str
    family: str                      # plain | engine | research
    state: Optional[str]             # refill | rsst | None
    precision: str                   # fp32 | bf16
    compiled: bool
    events: bool
    batch: int
    loop: object = field(repr=False)
    seconds: List[float] = field(default_factory=list)   # per step, one per round
    own_bytes: Optional[int] = None
    transient_bytes: int = 0


def peak_tflops(device: torch.device, override: Optional[float]) -> dict:
    """Peak TFLOPS per precision for ``device`` ({} when unknown: MFU is then not given)."""
    if override:
        return {"bf16": override, "tf32": override, "fp32": override}
    if device.type != "cuda":
        return {}
    name = torch.cuda.get_device_name(device)
    return next((dict(peaks) for key, peaks in PEAK_TFLOPS if key in name), {})


def step_flops(model, images, labels, batch: int) -> float:
    """FLOPs of one training step's forward + backward at ``batch`` (eager, fp32). Attention
    runs on the math kernel here, so its matmuls count on every device (the CPU's fused
    kernel has no FLOP formula)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    probe = copy.deepcopy(model).train()
    x = images[:batch].float() / 255.0
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
        F.cross_entropy(probe(x), labels[:batch]).backward()
    return float(counter.get_total_flops())


def build_variants(base, images, labels, batch: int, device, args, masks, target, logs: list,
                   tmp: Path):
    """Every variant at ``batch``, warmed up (compiled), with its own memory measured; the
    event logs it opens are added to ``logs``."""
    t = load_config("demo", ["train.optimizer='sgd'", "train.lr=0.01", "train.momentum=0.9",
                             "train.schedule='constant'", "train.weight_decay=1e-4"])["train"]
    dtypes = {"fp32": None, "bf16": torch.bfloat16}
    compiles = [False, True] if args.compile_on else [False]
    specs = [("plain", None, p, c, False) for c in compiles for p in dtypes]
    specs += [("engine", s, p, c, True) for c in compiles for s in ("refill", "rsst")
              for p in dtypes]
    specs += [("engine", "rsst", "bf16", compiles[-1], False), ("research", "rsst", "fp32",
                                                                  False, False)]
    out = []
    for family, state, prec, comp, events in specs:
        before = torch.cuda.memory_allocated(device) if device.type == "cuda" else None
        model = copy.deepcopy(base)
        source = device_source(images, labels, model, batch)
        if family == "plain":
            loop = PlainLoop(model, source, t, device, dtypes[prec], comp)
        elif family == "engine":
            log = EventLog(tmp / f"{state}-{prec}-{comp}-{batch}.jsonl") if events else None
            logs.append(log)
            loop = EngineLoop(model, source, {**t, "compile": comp}, device, dtypes[prec],
                              masks, target if state == "rsst" else None, log)
        else:
            loop = ResearchLoop(model, images, labels, batch, device, masks, target)
        name = " ".join([family, state or "", prec, "compiled" if comp else "",
                         "" if events or family != "engine" else "no events"]).split()
        v = Variant(" ".join(name), family, state, prec, comp, events, batch, loop)
        for _ in range(args.warmup):
            loop.before_slot()
            loop.steps(args.research_steps if family == "research" else args.steps)
        sync(device)
        if before is not None:
            v.own_bytes = torch.cuda.memory_allocated(device) - before
        out.append(v)
    return out


def time_rounds(variants: List[Variant], args, device) -> None:
    """``args.rounds`` rounds; each runs every variant once, the order rotated per round."""
    for r in range(args.rounds):
        k = r % len(variants)
        for v in variants[k:] + variants[:k]:
            steps = args.research_steps if v.family == "research" else args.steps
            v.loop.before_slot()
            sync(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                base = torch.cuda.memory_allocated(device)
            t0 = time.perf_counter()
            v.loop.steps(steps)
            sync(device)
            v.seconds.append((time.perf_counter() - t0) / steps)
            if device.type == "cuda":
                v.transient_bytes = max(v.transient_bytes,
                                        torch.cuda.max_memory_allocated(device) - base)
        print(f"  round {r + 1}/{args.rounds} done", flush=True)


def eval_speed(variants: List[Variant], images, labels, batch: int, device) -> dict:
    """Evaluation images/s of the engine's best RSST variant (its ``Trainer.evaluate``, eval
    batch 2 × batch) and of the research-style loop (its own loader, batch ``batch``)."""
    engine = [v for v in variants if v.family == "engine" and v.state == "rsst" and v.events]
    best = min(engine, key=lambda v: statistics.median(v.seconds))
    research = next(v for v in variants if v.family == "research")
    n = min(len(labels), 10_000)
    source = device_source(images[:n], labels[:n], best.loop.trainer.model, 2 * batch,
                           train=False)
    def engine_pass() -> int:
        best.loop.trainer.evaluate(source)  # ends with a host sync
        return source.num_samples

    out = {}
    for label, variant, one_pass in (
            ("engine", best, engine_pass),
            ("research", research, lambda: research.loop.evaluate(images[:n], labels[:n]))):
        one_pass()  # warm-up (compiles the eval graph)
        t0 = time.perf_counter()
        seen = one_pass()
        sync(device)
        out[label] = {"variant": variant.name, "images_per_s": seen / (time.perf_counter() - t0)}
    return out


def hours(train_ips: float, eval_ips: float) -> float:
    e = EXPERIMENT
    per_epoch = e["train_images"] / train_ips + e["eval_images"] / eval_ips
    return e["states"] * e["epochs"] * per_epoch / 3600.0


def summarise(variants: List[Variant], flops: float, peaks: dict, device) -> List[dict]:
    rows = []
    for v in variants:
        step = statistics.median(v.seconds)
        precision = v.precision
        if precision == "fp32" and device.type == "cuda" and v.family != "research":
            precision = "tf32"  # configure_backends: TF32 matmuls for fp32 on CUDA
        peak = peaks.get(precision)
        row = dict(name=v.name, family=v.family, state=v.state, precision=v.precision,
                   compiled=v.compiled, events=v.events, batch=v.batch)
        row.update(step_ms=1000 * step, step_ms_min=1000 * min(v.seconds),
                   images_per_s=v.batch / step, flops_per_step=flops,
                   achieved_tflops=flops / step / 1e12, matmul_precision=precision,
                   peak_tflops=peak, mfu=(flops / step / (peak * 1e12)) if peak else None,
                   peak_mem_bytes=(v.own_bytes + v.transient_bytes)
                   if v.own_bytes is not None else None)
        rows.append(row)
    for row in rows:
        same = [r for r in rows if r["family"] == "plain" and r["precision"] == row["precision"]
                and r["compiled"] == row["compiled"]]
        row["vs_plain"] = row["images_per_s"] / same[0]["images_per_s"] if same and \
            row["family"] == "engine" else None
    return rows


def print_table(rows: List[dict]) -> None:
    print(f"{'batch':>5}  {'variant':34s} {'img/s':>9} {'step ms':>8} {'(min)':>8} "
          f"{'peak MiB':>9} {'MFU':>6} {'vs plain':>8}")
    for r in rows:
        mem = f"{r['peak_mem_bytes'] / 2**20:9.0f}" if r["peak_mem_bytes"] is not None \
            else f"{'n/a':>9}"
        mfu = f"{100 * r['mfu']:5.1f}%" if r["mfu"] is not None else f"{'n/a':>6}"
        vs = f"{r['vs_plain']:8.3f}" if r["vs_plain"] is not None else f"{'':8}"
        print(f"{r['batch']:5d}  {r['name']:34s} {r['images_per_s']:9.0f} {r['step_ms']:8.2f} "
              f"{r['step_ms_min']:8.2f} {mem} {mfu} {vs}")


def bench_batch(base, images, labels, batch, device, args, masks, target, peaks, tmp):
    print(f"== batch {batch}: building and warming up (compiling) the variants ==", flush=True)
    logs: list = []
    variants = build_variants(base, images, labels, batch, device, args, masks, target, logs,
                              tmp)
    flops = step_flops(base, images, labels, batch)
    time_rounds(variants, args, device)
    for log in logs:
        if log is not None:
            log.close()
    rows = summarise(variants, flops, peaks, device)
    evals = eval_speed(variants, images, labels, batch, device)
    engine_ips = min((r for r in rows if r["name"] == evals["engine"]["variant"]),
                     key=lambda r: r["step_ms"])["images_per_s"]
    research_ips = next(r for r in rows if r["family"] == "research")["images_per_s"]
    projection = {
        "engine": {"variant": evals["engine"]["variant"], "train_images_per_s": engine_ips,
                   "eval_images_per_s": evals["engine"]["images_per_s"],
                   "hours": hours(engine_ips, evals["engine"]["images_per_s"])},
        "research": {"variant": evals["research"]["variant"],
                     "train_images_per_s": research_ips,
                     "eval_images_per_s": evals["research"]["images_per_s"],
                     "hours": hours(research_ips, evals["research"]["images_per_s"])}}
    for v in variants:  # free this batch size's models before the next
        v.loop = None
    return rows, projection, event_cost(rows)


def event_cost(rows: List[dict]) -> dict:
    """The engine RSST bf16 loop with its events (and a host sync per 0.1 s) against the
    same loop without (one sync per slot)."""
    quiet = next(r for r in rows if r["family"] == "engine" and not r["events"])
    loud = next(r for r in rows if r["family"] == "engine" and r["events"] and
                r["state"] == "rsst" and r["precision"] == "bf16" and
                r["compiled"] == quiet["compiled"])
    return {"with_events": loud["name"], "without_events": quiet["name"],
            "ratio": loud["images_per_s"] / quiet["images_per_s"]}


def report(result: dict) -> None:
    print_table(result["variants"])
    e = EXPERIMENT
    print(f"\nprojected full experiment ({e['states']} states x {e['epochs']} epochs of "
          f"{e['train_images']:,} training images, {e['eval_images']:,} evaluated per epoch; "
          f"pruning steps and checkpoints not included):")
    for batch, proj in result["projection"].items():
        for who, p in proj.items():
            print(f"  batch {batch:>4} {who:8s} {p['variant']:28s} train "
                  f"{p['train_images_per_s']:9.0f} img/s, eval {p['eval_images_per_s']:9.0f} "
                  f"img/s -> {p['hours']:8.2f} h")
    for batch, ev in result["event_path"].items():
        print(f"  event path, batch {batch}: {ev['with_events']} / {ev['without_events']} = "
              f"{ev['ratio']:.3f}x")
    t = TARGETS
    print(f"\nissue 11 targets (H100/H200, bf16): engine RSST >= {t['engine_img_s']:,} img/s, "
          f"MFU >= {t['mfu']:.0%}, engine >= {t['engine_vs_plain']}x plain, full experiment "
          f"<= {t['hours']} h")


def environment(device: torch.device, args) -> dict:
    import timm

    return {"device": str(device), "device_name": torch.cuda.get_device_name(device)
            if device.type == "cuda" else cpu_name(),
            "torch": torch.__version__, "timm": timm.__version__,
            "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "load_average": list(os.getloadavg()),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "quick": args.quick,
            "compile": args.compile_on, "rounds": args.rounds, "steps": args.steps,
            "research_steps": args.research_steps}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="small model and data (CPU test)")
    ap.add_argument("--batches", type=int, nargs="+")
    ap.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                    help="compiled variants too (auto: on CUDA only)")
    ap.add_argument("--peak-tflops", type=float, help="device peak for MFU (all precisions)")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--steps", type=int, help="steps per variant per round")
    ap.add_argument("--research-steps", type=int)
    ap.add_argument("--warmup", type=int, default=1, help="untimed slots per variant")
    ap.add_argument("--images", type=int)
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's; "
                    "1 with --quick on CPU, where the models are tiny)")
    ap.add_argument("--json", default="runs/bench_gpu.json")
    args = ap.parse_args(argv)
    quick = args.quick
    args.batches = args.batches or ([16, 32] if quick else [128, 512])
    args.rounds = args.rounds or (2 if quick else 5)
    args.steps = args.steps or (3 if quick else 30)
    args.research_steps = args.research_steps or (3 if quick else 10)
    args.images = args.images or (2_048 if quick else 50_000)
    args.compile_on = args.compile == "on" or (args.compile == "auto"
                                               and args.device.startswith("cuda"))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads or (args.quick and device.type == "cpu"):
        torch.set_num_threads(args.threads or 1)
    configure_backends(device, {"tf32": True})
    # every (precision, batch size, train/eval) is a graph of the same forward: allow them all
    torch._dynamo.config.recompile_limit = max(32, torch._dynamo.config.recompile_limit)
    torch.manual_seed(0)
    import timm

    spec = VIT_QUICK if args.quick else VIT_S
    base = timm.create_model(spec["name"], pretrained=False, **spec["kwargs"]).to(device)
    images = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 10, (args.images,), device=device)
    masks, target = state_masks(base)
    peaks = peak_tflops(device, args.peak_tflops)
    result = {"environment": environment(device, args), "model": spec,
              "images_on_device": args.images, "peak_tflops": peaks, "variants": [],
              "projection": {}, "event_path": {}, "experiment": EXPERIMENT,
              "targets": TARGETS}
    print(f"bench_gpu: {result['environment']['device_name']} ({device}), torch "
          f"{torch.__version__}, {args.images:,} images on the device, batches {args.batches}, "
          f"compile {'on' if args.compile_on else 'off'}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for batch in args.batches:
            rows, projection, events = bench_batch(base, images, labels, batch, device, args,
                                                   masks, target, peaks, Path(tmp))
            result["variants"] += rows
            result["projection"][str(batch)] = projection
            result["event_path"][str(batch)] = events
    report(result)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
