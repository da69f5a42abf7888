"""``tuiprune export RUN_DIR [--state N] [--out DIR]``: the physically compacted model.

Takes ``RUN_DIR/checkpoints/state<N>_best.pt`` (default: the highest state that has one, so an
interrupted run exports its last finished state), removes the pruned heads and neurons
(:mod:`engine.compact`) and writes into ``DIR`` (default ``RUN_DIR/export-state<N>``):

- ``model.safetensors`` + ``structure.json`` — ``engine.artifact.load(DIR)`` rebuilds the
  module;
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
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from engine.errors import UserError
from engine.rundir import EXPORT_FILE, best_checkpoints, export_dir
from tuiprune import format as fmt
from tuiprune.exportdoc import EXPORT_FORMAT, latency_rows

BATCHES = (1, 32)
DEFAULT_REPS = 21
MIN_REPS = 5
BUDGET_S = 60.0          # per batch size and device, for both models together
Say = Callable[[str], None]


def export_main(run_dir: Path, state: Optional[int] = None, out: Optional[Path] = None) -> int:
    """The ``export`` command."""
    from rich.console import Console

    console = Console(highlight=False)
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{fmt.printable(run_dir)}: no such run directory; pass the directory "
                        f"of a run (it holds events.jsonl and checkpoints/)")
    available = best_checkpoints(run_dir)
    if not available:
        raise UserError(f"{fmt.printable(run_dir)}: no best checkpoint "
                        f"(checkpoints/state<N>_best.pt) to export — the run has not finished "
                        f"an epoch of any state yet; export again once it has")
    if state is None:
        state = max(available)
    elif state not in available:
        raise UserError(f"{fmt.printable(run_dir)}: state {state} has no best checkpoint; "
                        f"states available: {', '.join(map(str, available))} (pass one of "
                        f"them to --state)")
    out = Path(out) if out is not None else export_dir(run_dir, state)
    _check_destination(out)
    result = export_checkpoint(available[state], out, run_dir=run_dir, state=state,
                               console=console)
    print_summary(console, result, out)
    return 0


def _check_destination(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {fmt.printable(out)}: exists and is not a directory; choose "
                        f"another path")
    if out.is_dir() and any(out.iterdir()) and not (out / EXPORT_FILE).is_file():
        raise UserError(f"--out {fmt.printable(out)}: a non-empty directory that is not an "
                        f"earlier export; choose an empty or new directory")


def _say(console) -> Say:
    if console is None:
        return lambda msg: None
    from rich.text import Text

    return lambda msg: console.print(Text("· ", style="dim") + Text(fmt.printable(msg)),
                                     soft_wrap=True)


def load_masked(path: Path):
    """``engine.checkpoint.load_model`` with every failure as one UserError line, and a
    checkpoint whose pruned weights are not zero refused (its masks do not describe it)."""
    from engine.checkpoint import load_model

    where = fmt.printable(path)
    try:
        model, masks, ckpt = load_model(path)
    except KeyError as exc:
        raise UserError(f"{where}: the checkpoint lacks {exc}, so its model cannot be rebuilt; "
                        f"export reads checkpoints/state<N>_best.pt written by the engine") from None
    except (RuntimeError, ValueError, TypeError) as exc:
        first = " ".join(str(exc).strip().splitlines()[:2])
        raise UserError(f"{where}: cannot rebuild the checkpoint's model — the saved weights or "
                        f"masks do not fit its model spec: {fmt.printable(first)}") from None
    saved = ckpt["model"]
    nonzero = sum(int(saved[name + ".weight"][mask == 0].ne(0).sum())
                  for name, mask in (masks or {}).items())
    if nonzero:
        raise UserError(f"{where}: masks/model mismatch — {nonzero:,} weights the masks prune "
                        f"are not zero in this checkpoint; export a checkpoint written by the "
                        f"engine")
    return model, masks, ckpt


def _compact(model, masks, path: Path):
    from engine.compact import compact, kept_from_masks
    from engine.measure import max_abs_diff, max_abs_output

    try:
        kept = kept_from_masks(model, masks)
        small = compact(model, kept)
    except (ValueError, TypeError) as exc:
        raise UserError(f"{fmt.printable(path)}: {fmt.printable(exc)} — the checkpoint's masks "
                        f"do not fit its model; export a checkpoint written by the engine") from None
    diff = max_abs_diff(model, small)
    tolerance = 1e-4 * max(1.0, max_abs_output(model))
    if not diff <= tolerance:
        raise UserError(f"{fmt.printable(path)}: the compacted model's output differs from the "
                        f"masked one by {diff:.3g} (tolerance {tolerance:.3g})")
    return kept, small, {"max_abs_diff": diff, "tolerance": tolerance}


def export_checkpoint(ckpt_path: Path, out: Path, *, run_dir: Optional[Path] = None,
                      state: Optional[int] = None, console=None) -> Dict[str, Any]:
    """Compact the model of one checkpoint and write the export into ``out`` (atomically)."""
    import torch

    from engine import artifact
    from engine.measure import input_shape

    say = _say(console)
    say(f"loading {ckpt_path}")
    model, masks, ckpt = load_masked(ckpt_path)
    kept, small, equivalence = _compact(model, masks, ckpt_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        say(f"compacted: {kept.heads_kept}/{kept.heads_total} heads, "
            f"{kept.neurons_kept}/{kept.neurons_total} neurons kept")
        artifact.save(small, kept, tmp, model_spec=ckpt["model_spec"],
                      extra={"source": {"checkpoint": str(ckpt_path), "state": ckpt.get("state"),
                                        "epoch": ckpt.get("epoch"),
                                        "val_acc": ckpt.get("val_acc")}})
        say("writing the torch.export program (model.pt2)")
        artifact.export_program(small, tmp / artifact.PROGRAM_FILE,
                                torch.randn((2,) + input_shape(small)))
        say("counting parameters and MACs")
        result = describe(ckpt, ckpt_path, run_dir, state, (model, small), kept, equivalence)
        result["latency"] = measure_latency(model, small, say)
        (tmp / EXPORT_FILE).write_text(json.dumps(result, indent=1) + "\n")
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def _sizes(models) -> Dict[str, Any]:
    from engine.measure import count_macs, count_params

    params = [count_params(m) for m in models]
    macs = [count_macs(m) for m in models]
    return {"params": {"before": params[0], "after": params[1], "ratio": params[0] / params[1]},
            "macs": {"before": macs[0], "after": macs[1], "ratio": macs[0] / macs[1],
                     "batch": 1, "counted": "torch.utils.flop_counter (FLOPs/2): linear "
                                            "layers, patch embedding, attention matmuls"}}


def describe(ckpt, ckpt_path: Path, run_dir, state, models, kept, equivalence) -> Dict[str, Any]:
    """``export.json`` without the latency: where it came from, structure, sizes, versions."""
    import timm
    import torch

    from engine import artifact
    from engine.measure import input_shape
    from tuiprune import __version__

    rel = str(ckpt_path.relative_to(run_dir)) if run_dir and ckpt_path.is_relative_to(run_dir) \
        else str(ckpt_path)
    blocks = [{"block": i, "heads_kept": len(b.heads_kept), "heads_total": b.heads_total,
               "neurons_kept": len(b.neurons_kept), "neurons_total": b.neurons_total}
              for i, b in enumerate(kept.blocks)]
    return {
        "format": EXPORT_FORMAT, "created": time.time(),
        "run_id": Path(run_dir).name if run_dir else None,
        "state": state if state is not None else ckpt.get("state"),
        "checkpoint": rel, "checkpoint_kind": ckpt.get("kind"), "epoch": ckpt.get("epoch"),
        "val_acc": ckpt.get("val_acc"), "model_spec": ckpt["model_spec"],
        "input": list(input_shape(models[1])),
        "structure": {"heads_kept": kept.heads_kept, "heads_total": kept.heads_total,
                      "neurons_kept": kept.neurons_kept, "neurons_total": kept.neurons_total,
                      "blocks": blocks},
        **_sizes(models),
        "equivalence": equivalence,
        "files": {"weights": artifact.WEIGHTS_FILE, "structure": artifact.STRUCTURE_FILE,
                  "program": artifact.PROGRAM_FILE},
        "versions": {"tuiprune": __version__, "torch": torch.__version__,
                     "timm": timm.__version__},
    }


def _reps_env() -> Optional[int]:
    raw = os.environ.get("TUIPRUNE_EXPORT_REPS")
    if not raw:
        return None
    try:
        reps = int(raw)
    except ValueError:
        reps = 0
    if reps < 1:
        raise UserError(f"TUIPRUNE_EXPORT_REPS={fmt.printable(raw)!r}: expected a positive "
                        f"integer")
    return reps


def _device_info(device: str) -> Dict[str, Any]:
    import torch

    from engine.measure import cpu_name

    if device == "cpu":
        return {"threads": torch.get_num_threads(), "processor": cpu_name(), "batches": {}}
    return {"name": torch.cuda.get_device_name(0), "batches": {}}


def measure_latency(dense, small, say: Say = lambda msg: None) -> Dict[str, Any]:
    """Median latency of the dense and the compacted model, batch 1 and 32, CPU and CUDA
    (on copies: the models given are not moved or switched)."""
    import torch

    from engine.measure import time_models

    fixed = _reps_env()
    devices: Dict[str, Any] = {}
    targets = ["cpu"]
    if torch.cuda.is_available():
        targets.append("cuda")
    else:
        devices["cuda"] = {"skipped": "no CUDA device available"}
    for device in targets:
        info = _device_info(device)
        for batch in BATCHES:
            reps = fixed or _reps_for(dense, batch, device)
            say(f"timing {device} batch {batch} ({reps} interleaved repetitions)")
            t = time_models({"before": dense, "after": small}, batch, reps=reps, device=device)
            info["batches"][str(batch)] = {
                "before_ms": t["before"]["median_ms"], "after_ms": t["after"]["median_ms"],
                "speedup": t["before"]["median_ms"] / t["after"]["median_ms"],
                "reps": reps, "before_min_ms": t["before"]["min_ms"],
                "after_min_ms": t["after"]["min_ms"]}
        devices[device] = info
    return {"method": "median of interleaved repetitions (dense and compacted alternate), "
                      "eval mode, torch.inference_mode, after 2 warm-up passes",
            **devices}


def _reps_for(model, batch: int, device: str) -> int:
    """21 repetitions, or fewer (≥ 5) when one pass is slow: about BUDGET_S per batch size."""
    from engine.measure import time_models

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
    """What was exported and how much smaller and faster it is."""
    from rich.table import Table
    from rich.text import Text

    s = result["structure"]
    console.print(Text("exported", style="bold") + Text(
        f" state {result['state']} ({fmt.printable(result['checkpoint'])}, val acc "
        f"{fmt.pct(result.get('val_acc'))}) → {fmt.printable(out)}"), soft_wrap=True)
    console.print(Text(f"heads {fmt.ratio(s['heads_kept'], s['heads_total'])}, neurons "
                       f"{fmt.ratio(s['neurons_kept'], s['neurons_total'])} kept; max |Δ output| "
                       f"{fmt.sci(result['equivalence']['max_abs_diff'])}"))
    table = Table(title="before → after", show_edge=False)
    for col in ("", "before", "after", "×"):
        table.add_column(col, justify="right" if col else "left")
    for name, key in (("parameters", "params"), ("MACs / image", "macs")):
        r = result[key]
        table.add_row(name, fmt.count(r["before"]), fmt.count(r["after"]),
                      fmt.number(r["ratio"]))
    for row in latency_rows(result.get("latency")):
        table.add_row(*row)
    console.print(table)
