"""``tuiprune export RUN_DIR [--state N] [--out DIR]``: the physically compacted model.

Takes ``RUN_DIR/checkpoints/state<N>_best.pt`` (default: the highest state that has one, so an
interrupted run exports its last finished state), removes the pruned heads and neurons
(:mod:`engine.compact`) and writes into ``DIR`` (default ``RUN_DIR/export-state<N>``):

- ``model.safetensors`` + ``structure.json`` — ``engine.compact.load(DIR)`` rebuilds the module;
- ``model.pt2`` — a ``torch.export`` program: ``torch.export.load(path).module()`` runs it with
  plain PyTorch, no tuiprune, no timm (dynamic batch size);
- ``export.json`` — parameters and MACs before/after, the measured latency before/after
  (batch 1 and 32, median of interleaved repetitions, CPU and CUDA when present) and the
  largest output difference between the checkpoint's masked model and the compacted one.

Everything is written into a temporary directory beside ``DIR`` and renamed into place at the
end, so a failure leaves nothing half-written. ``DIR`` may already hold an earlier export (it
is replaced); any other non-empty directory is refused.

``TUIPRUNE_EXPORT_REPS`` overrides the number of timed repetitions (tests use it to stay fast);
by default each batch size gets up to 21 repetitions per model, fewer (at least 5) when one
forward pass is so slow that 21 would take more than about a minute.

Like every ``tuiprune`` command module, this one imports torch only inside functions.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from engine.errors import UserError

EXPORT_FORMAT = 1
EXPORT_FILE = "export.json"
BATCHES = (1, 32)
DEFAULT_REPS = 21
MIN_REPS = 5
BUDGET_S = 60.0          # per batch size and device, for both models together
CHECKPOINT_RE = re.compile(r"^state(\d+)_best\.pt$")


def best_checkpoints(run_dir: Path) -> Dict[int, Path]:
    """State → path of its ``state<N>_best.pt``, for every state that has one."""
    ck = Path(run_dir) / "checkpoints"
    found = {}
    if ck.is_dir():
        for p in ck.iterdir():
            m = CHECKPOINT_RE.match(p.name)
            if m and p.is_file():
                found[int(m.group(1))] = p
    return dict(sorted(found.items()))


def export_main(run_dir: Path, state: Optional[int] = None, out: Optional[Path] = None) -> int:
    from rich.console import Console

    console = Console(highlight=False)
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory; pass the directory of a run "
                        f"(it holds events.jsonl and checkpoints/)")
    available = best_checkpoints(run_dir)
    if not available:
        raise UserError(f"{run_dir}: no best checkpoint (checkpoints/state<N>_best.pt) to "
                        f"export — the run has not finished an epoch of any state yet; export "
                        f"again once it has")
    listing = ", ".join(str(s) for s in available)
    if state is None:
        state = max(available)
    elif state not in available:
        raise UserError(f"{run_dir}: state {state} has no best checkpoint; states available: "
                        f"{listing} (pass one of them to --state)")
    out = Path(out) if out is not None else run_dir / f"export-state{state}"
    _check_destination(out)
    ckpt_path = available[state]

    result = export_checkpoint(ckpt_path, out, run_dir=run_dir, state=state, console=console)
    print_summary(console, result, out)
    return 0


def _check_destination(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory; choose another path")
    if out.is_dir() and any(out.iterdir()) and not (out / EXPORT_FILE).is_file():
        raise UserError(f"--out {out}: a non-empty directory that is not an earlier export; "
                        f"choose an empty or new directory")


def export_checkpoint(ckpt_path: Path, out: Path, *, run_dir: Optional[Path] = None,
                      state: Optional[int] = None, console=None) -> Dict[str, Any]:
    """Compact the model of one checkpoint and write the export into ``out`` (atomically)."""
    import torch

    from engine import compact as C

    say = ((lambda msg: console.print(f"[dim]·[/dim] {msg}", soft_wrap=True)) if console
           else (lambda msg: None))
    say(f"loading {ckpt_path}")
    ckpt = _load_checkpoint(ckpt_path)
    spec = ckpt["model_spec"]
    dense = _dense_model(ckpt, ckpt_path)
    try:
        kept = C.kept_from_masks(dense, ckpt.get("masks"))
        small = C.compact(dense, kept)
    except (ValueError, TypeError) as exc:
        raise UserError(f"{ckpt_path}: {exc} — the checkpoint's masks do not fit its model; "
                        f"export a checkpoint written by the engine") from None
    diff = C.max_abs_diff(dense, small)
    scale = _output_scale(dense)
    tolerance = 1e-4 * max(1.0, scale)
    if not diff <= tolerance:
        raise UserError(f"{ckpt_path}: masks/model mismatch — the compacted model's output "
                        f"differs from the checkpoint's by {diff:.3g} (tolerance {tolerance:.3g}): "
                        f"weights the masks prune are not zero in this checkpoint")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        say(f"compacted: {kept.heads_kept}/{kept.heads_total} heads, "
            f"{kept.neurons_kept}/{kept.neurons_total} neurons kept")
        C.save(small, kept, tmp, model_spec=spec,
               extra={"source": {"checkpoint": str(ckpt_path), "state": ckpt.get("state"),
                                 "epoch": ckpt.get("epoch"), "val_acc": ckpt.get("val_acc")}})
        example = torch.randn((2,) + C.input_shape(small))
        say("writing the torch.export program (model.pt2)")
        C.export_program(small, tmp / C.PROGRAM_FILE, example)
        say("counting parameters and MACs")
        result = _describe(ckpt, ckpt_path, run_dir, state, dense, small, kept, diff, tolerance)
        result["latency"] = measure_latency(dense, small, say)
        (tmp / EXPORT_FILE).write_text(json.dumps(result, indent=1) + "\n")
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def _load_checkpoint(path: Path) -> Dict[str, Any]:
    from engine.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)            # UserError for a missing, torn or foreign file
    if not isinstance(ckpt.get("model_spec"), dict) or "name" not in ckpt["model_spec"]:
        raise UserError(f"{path}: the checkpoint has no model_spec, so its model cannot be "
                        f"rebuilt; export reads checkpoints/state<N>_best.pt written by the "
                        f"engine")
    return ckpt


def _dense_model(ckpt: Dict[str, Any], path: Path):
    from engine import compact as C

    spec = ckpt["model_spec"]
    try:
        model = C.build_dense(spec)
    except Exception as exc:
        raise UserError(f"{path}: cannot build its model {spec.get('name')!r} "
                        f"({type(exc).__name__}: {exc})") from None
    try:
        model.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[:3]
        raise UserError(f"{path}: the saved weights do not fit the model spec "
                        f"{spec.get('name')!r}: {' '.join(first)}") from None
    return model.eval()


def _output_scale(model) -> float:
    import torch

    from engine.compact import input_shape

    x = torch.randn((2,) + input_shape(model), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return float(model(x).abs().max())


def _describe(ckpt, ckpt_path, run_dir, state, dense, small, kept, diff, tolerance):
    import timm
    import torch

    from engine import compact as C

    try:
        from tuiprune import __version__ as version
    except ImportError:  # pragma: no cover - the package always defines it
        version = None
    params = (C.count_params(dense), C.count_params(small))
    macs = (C.count_macs(dense), C.count_macs(small))
    rel = str(ckpt_path.relative_to(run_dir)) if run_dir and ckpt_path.is_relative_to(run_dir) \
        else str(ckpt_path)
    return {
        "format": EXPORT_FORMAT,
        "created": time.time(),
        "run_id": Path(run_dir).name if run_dir else None,
        "state": state if state is not None else ckpt.get("state"),
        "checkpoint": rel,
        "checkpoint_kind": ckpt.get("kind"),
        "epoch": ckpt.get("epoch"),
        "val_acc": ckpt.get("val_acc"),
        "model_spec": ckpt["model_spec"],
        "input": list(C.input_shape(small)),
        "structure": {
            "heads_kept": kept.heads_kept, "heads_total": kept.heads_total,
            "neurons_kept": kept.neurons_kept, "neurons_total": kept.neurons_total,
            "blocks": [{"block": i, "heads_kept": len(b.heads_kept), "heads_total": b.heads_total,
                        "neurons_kept": len(b.neurons_kept), "neurons_total": b.neurons_total}
                       for i, b in enumerate(kept.blocks)],
        },
        "params": {"before": params[0], "after": params[1], "ratio": params[0] / params[1]},
        "macs": {"before": macs[0], "after": macs[1], "ratio": macs[0] / macs[1], "batch": 1,
                 "counted": "torch.utils.flop_counter (FLOPs/2): linear layers, patch "
                            "embedding, attention matmuls"},
        "equivalence": {"max_abs_diff": diff, "tolerance": tolerance},
        "files": {"weights": C.WEIGHTS_FILE, "structure": C.STRUCTURE_FILE,
                  "program": C.PROGRAM_FILE},
        "versions": {"tuiprune": version, "torch": torch.__version__, "timm": timm.__version__},
    }


def _reps_env() -> Optional[int]:
    raw = os.environ.get("TUIPRUNE_EXPORT_REPS")
    if not raw:
        return None
    try:
        reps = int(raw)
    except ValueError:
        raise UserError(f"TUIPRUNE_EXPORT_REPS={raw!r}: expected a positive integer") from None
    if reps < 1:
        raise UserError(f"TUIPRUNE_EXPORT_REPS={raw!r}: expected a positive integer")
    return reps


def measure_latency(dense, small, say=lambda msg: None) -> Dict[str, Any]:
    """Median latency of the dense and the compacted model, batch 1 and 32, CPU and CUDA."""
    import copy

    import torch

    from engine.compact import cpu_name, time_models

    fixed = _reps_env()
    devices: Dict[str, Any] = {}
    targets = [("cpu", dense, small)]
    if torch.cuda.is_available():
        targets.append(("cuda", copy.deepcopy(dense), copy.deepcopy(small)))
    else:
        devices["cuda"] = {"skipped": "no CUDA device available"}
    for device, d, s in targets:
        info: Dict[str, Any] = {"threads": torch.get_num_threads()} if device == "cpu" else \
            {"name": torch.cuda.get_device_name(0)}
        if device == "cpu":
            info["processor"] = cpu_name()
        info["batches"] = {}
        for batch in BATCHES:
            reps = fixed or _reps_for(d, batch, device)
            say(f"timing {device} batch {batch} ({reps} interleaved repetitions)")
            t = time_models({"before": d, "after": s}, batch, reps=reps, device=device)
            info["batches"][str(batch)] = {
                "before_ms": t["before"]["median_ms"], "after_ms": t["after"]["median_ms"],
                "speedup": t["before"]["median_ms"] / t["after"]["median_ms"],
                "reps": reps, "before_min_ms": t["before"]["min_ms"],
                "after_min_ms": t["after"]["min_ms"]}
        devices[device] = info
    for _, d, s in targets:
        d.to("cpu"), s.to("cpu")
    return {"method": "median of interleaved repetitions (dense and compacted alternate), "
                      "eval mode, torch.inference_mode, after 2 warm-up passes",
            **devices}


def _reps_for(model, batch: int, device: str) -> int:
    """21 repetitions, or fewer (≥ 5) when one pass is slow: about BUDGET_S per batch size."""
    from engine.compact import time_models

    one = time_models({"probe": model}, batch, reps=1, warmup=1, device=device)
    per_pass = one["probe"]["median_ms"] / 1000.0
    return max(MIN_REPS, min(DEFAULT_REPS, int(BUDGET_S / (2 * max(per_pass, 1e-6)))))


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an earlier export at ``out`` is moved aside, then deleted."""
    old = None
    if out.exists():
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        else:
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def print_summary(console, result: Dict[str, Any], out: Path) -> None:
    from rich.table import Table

    s = result["structure"]
    console.print(f"[bold]exported[/bold] state {result['state']} "
                  f"({result['checkpoint']}, val acc {_pct(result.get('val_acc'))}) → {out}",
                  soft_wrap=True)
    console.print(f"heads {s['heads_kept']}/{s['heads_total']}, "
                  f"neurons {s['neurons_kept']}/{s['neurons_total']} kept; "
                  f"max |Δ output| {result['equivalence']['max_abs_diff']:.2e}")
    table = Table(title="before → after", show_edge=False)
    for col in ("", "before", "after", "×"):
        table.add_column(col, justify="right" if col else "left")
    for name, key in (("parameters", "params"), ("MACs / image", "macs")):
        r = result[key]
        table.add_row(name, f"{r['before']:,}", f"{r['after']:,}", f"{r['ratio']:.2f}")
    for row in latency_rows(result.get("latency") or {}):
        table.add_row(*row)
    console.print(table)


def latency_rows(latency: Dict[str, Any]) -> List[List[str]]:
    """[label, before, after, speed-up] per device and batch size (also used by the report)."""
    rows = []
    for device in ("cpu", "cuda"):
        info = latency.get(device) or {}
        for batch, r in (info.get("batches") or {}).items():
            label = f"{device} batch {batch}"
            if device == "cpu" and info.get("threads"):
                label += f" ({info['threads']} threads)"
            rows.append([label + " ms", f"{r['before_ms']:.2f}", f"{r['after_ms']:.2f}",
                         f"{r['speedup']:.2f}"])
    return rows


def _pct(v) -> str:
    return "n/a" if v is None else f"{float(v):.2f} %"
