"""``tuiprune run``: validate, then run (or resume) the engine in this process, headless."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import List, Optional

from engine.config import (apply_overrides, check_output_dir, dumps, load_config, read_toml,
                           resolve, step_ratios)
from engine.errors import EXIT_STOPPED, UserError
from engine.keep import expected_kept, head_multiple
from engine.pidfile import engine_alive, read_pidfile
from engine.rundir import CONFIG_FILE, EVENTS_FILE, new_run_dir, require_run_dir
from tuiprune import torchrun
from tuiprune.format import printable
from tuiprune.sweep_slots import visible_gpus

RESUME_OVERRIDABLE = {"run.device", "run.checkpoint_minutes", "data.workers",
                      "run.nproc_per_node", "run.dist_timeout"}


class StoppedEarly(Exception):
    """SIGINT/SIGTERM arrived before the engine took over its own signal handling."""


def _stop_early(signum, _frame) -> None:
    raise StoppedEarly(signal.Signals(signum).name)


def stop_on_signals() -> None:
    """Turn SIGINT/SIGTERM into an orderly stop until the run loop installs its own handlers
    (importing torch and building the model take seconds; a stop then must not kill the
    process without a word)."""
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _stop_early)


def run_main(config: Optional[Path], overrides: List[str], dry_run: bool = False,
             resume: Optional[Path] = None, run_dir: Optional[Path] = None,
             nproc: Optional[int] = None) -> int:
    """Entry point of ``tuiprune run``; returns the exit code (0 completed, 1 failed,
    3 stopped). ``nproc`` > 1 (or ``run.nproc_per_node``) runs it under torchrun."""
    try:
        return _run_main(config, overrides, dry_run, resume, run_dir, nproc)
    except StoppedEarly as exc:
        where = run_dir if run_dir is not None else resume
        if where is not None:
            _log_early_stop(Path(where), str(exc))
        print(f"{exc} received during set-up, before training began: stopped",
              file=sys.stderr)
        return EXIT_STOPPED


def _log_early_stop(run_dir: Path, signame: str) -> None:
    """A run directory made by `watch` says in its log that its engine stopped (torch-free)."""
    from engine.events import EventLog
    from engine.lock import RunLock

    log_path = run_dir / EVENTS_FILE
    if not (run_dir / CONFIG_FILE).is_file() or (log_path.exists()
                                                 and log_path.stat().st_size):
        return  # not a fresh watch directory (a resume keeps its log as it is)
    try:
        with RunLock(run_dir):
            log = EventLog(log_path)
            log.emit("run_ended", status="stopped", message=f"{signame} received during "
                     f"set-up, before training began; start it again with `tuiprune run "
                     f"--resume {run_dir}`")
            log.close()
    except Exception:  # best effort: the process is stopping anyway
        pass


def _run_main(config, overrides, dry_run, resume, run_dir, nproc) -> int:
    if nproc is not None and nproc < 1:
        raise UserError(f"--nproc-per-node must be 1 or more, not {nproc}")
    if resume is not None:
        if config is not None:
            raise UserError("give either a CONFIG to start a run or --resume RUN_DIR, not both")
        return _resume(Path(resume), overrides, nproc)
    if config is None:
        raise UserError("missing CONFIG: `tuiprune run configs/demo.toml` (or `tuiprune run "
                        "--resume RUN_DIR`)")
    cfg = load_config(config, overrides)
    if nproc is not None:
        cfg["run"]["nproc_per_node"] = nproc
    if dry_run:
        return _dry_run(cfg)
    check_output_dir(cfg)
    if run_dir is not None:
        run_dir = Path(run_dir)
        if (run_dir / EVENTS_FILE).exists() and (run_dir / EVENTS_FILE).stat().st_size:
            raise UserError(f"{run_dir} already holds a run; resume it with `tuiprune run "
                            f"--resume {run_dir}` or choose a new directory")
    if torchrun.under_torchrun():
        return _execute(cfg, run_dir, resume=False)  # a rank: rank 0 names the directory
    run_dir = run_dir if run_dir is not None else new_run_dir(cfg)
    if cfg["run"]["nproc_per_node"] > 1:
        return _launch_ranks(cfg, run_dir, resume=False)
    return _execute(cfg, run_dir, resume=False)


def _launch_ranks(cfg: dict, run_dir: Path, resume: bool, overrides: List[str] = ()) -> int:
    """Check what can be checked here, write the run directory, then start torchrun (a
    resume's ``overrides`` go to every rank)."""
    from engine.ranks import check_batch, check_gpus

    nproc = cfg["run"]["nproc_per_node"]
    check_batch(cfg["data"]["batch_size"], nproc)
    device = cfg["run"]["device"]
    if device.startswith("cuda") or device == "auto":  # counted in a child: no torch here
        gpus = len(visible_gpus())
        if device != "auto" or gpus:
            check_gpus(nproc, "cuda", gpus)
    if not resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / CONFIG_FILE).write_text(dumps(cfg))
    print(f"starting {nproc} processes with torchrun; run directory: {printable(run_dir)}",
          file=sys.stderr)
    return torchrun.launch(nproc, run_dir, resume, overrides)


def _resume(run_dir: Path, overrides: List[str], nproc: Optional[int]) -> int:
    require_run_dir(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise UserError(f"{run_dir} has no {CONFIG_FILE}: it is not a complete run directory "
                        f"and cannot be resumed")
    if engine_alive(run_dir):
        raise UserError(f"{run_dir} is still running (pid {read_pidfile(run_dir)['pid']}); "
                        f"watch it with `tuiprune watch {run_dir}` or stop it first")
    bad = [o for o in overrides if o.partition("=")[0].strip() not in RESUME_OVERRIDABLE]
    if bad:
        raise UserError(f"--set {bad[0]!r} cannot change a run being resumed; only "
                        f"{', '.join(sorted(RESUME_OVERRIDABLE))} can")
    raw = read_toml(run_dir / CONFIG_FILE)
    apply_overrides(raw, overrides)
    cfg = resolve(raw, base_dir=run_dir)
    if nproc is not None:
        cfg["run"]["nproc_per_node"] = nproc
    if not torchrun.under_torchrun() and cfg["run"]["nproc_per_node"] > 1:
        return _launch_ranks(cfg, run_dir, resume=True, overrides=overrides)
    return _execute(cfg, run_dir, resume=True)


def _execute(cfg: dict, run_dir: Optional[Path], resume: bool) -> int:
    from engine import distributed
    from engine.runner import Run
    from tuiprune.printer import Printer

    ranks = distributed.from_env()
    if ranks.distributed:
        run_dir = distributed.agree_run_dir(ranks, cfg, run_dir, resume)
    printer = Printer() if ranks.main else None  # ranks other than 0 write nothing
    run = Run(cfg, run_dir, listeners=[printer] if printer else [], ranks=ranks)
    try:
        code = run.resume() if resume else run.start()
    finally:
        if printer is not None:
            printer.close()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if printer is None:
        return code
    try:
        printer.summary(run_dir)
        if run.exit_note:
            print(f"error: {printable(run.exit_note)}" if code == 1 else
                  printable(run.exit_note), file=sys.stderr)
        if code != 0:
            print(f"run directory: {printable(run_dir)}", file=sys.stderr)
    except OSError:
        pass  # the terminal or engine.log is gone (disk full): the log has the story
    return code


def _dry_run(cfg: dict) -> int:
    """Print the resolved config and the model's prunable structure; train nothing."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from engine import data as data_mod
    from engine import model as model_mod
    from engine.structure import vit_structure

    console = Console(highlight=False)
    console.print("# resolved configuration", style="bold")
    console.print(dumps(cfg), markup=False)
    spec = model_mod.model_spec(cfg, data_mod.num_classes(cfg))
    model = model_mod.create(spec)
    struct = vit_structure(model)
    table = Table(title=Text(f"prunable structure of {spec['name']} "
                             f"({sum(p.numel() for p in model.parameters()):,} parameters)"),
                  title_justify="left")
    for col in ("block", "heads", "head dim", "neurons", "weights"):
        table.add_column(col, justify="right")
    for b in struct:
        table.add_row(str(b.index), str(b.num_heads), str(b.head_dim), str(b.hidden),
                      f"{b.attn_weights + b.mlp_weights:,}")
    table.add_row("all", str(struct.total_heads), "", str(struct.total_neurons),
                  f"{struct.total_weights:,}", style="bold")
    console.print(table)
    sorting, round_to = cfg["prune"]["sorting"], cfg["prune"]["round_to"]
    heads = [b.num_heads for b in struct]  # alive per block before the first step
    neurons = [b.hidden for b in struct]
    per_head = max(head_multiple(round_to, b.head_dim) for b in struct)
    at_most = "at most " if sorting == "global" and round_to > 1 else ""
    if round_to > 1:
        console.print(f"round_to = {round_to}: each block keeps a multiple of {round_to} "
                      f"neurons and of {per_head} head(s), rounded down from the ratio")
    for step, (hr, mr) in enumerate(zip(step_ratios(cfg, "head_ratio"),
                                        step_ratios(cfg, "mlp_ratio"))):
        heads = expected_kept(heads, hr, sorting, per_head)
        neurons = expected_kept(neurons, mr, sorting, round_to)
        console.print(f"after pruning step {step} ({sorting}): {at_most}{sum(heads)} of "
                      f"{struct.total_heads} heads and {at_most}{sum(neurons)} of "
                      f"{struct.total_neurons} neurons kept"
                      + (f" (per block: {', '.join(map(str, neurons))})"
                         if round_to > 1 and sorting != "global" else ""))
    console.print(f"weights: {printable(_weights_note(cfg))}", markup=False)
    return 0


def _weights_note(cfg: dict) -> str:
    m = cfg["model"]
    if not m["pretrained"]:
        return "random init"
    if m["pretrained_path"]:
        p = Path(m["pretrained_path"])
        if not p.is_file():
            raise UserError(f"model.pretrained_path: file not found: {p}")
        return f"file {p}"
    return f"timm hub ({m['name']}), fetched when the run starts"
