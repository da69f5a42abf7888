"""``tuiprune sweep``: every combination of a grid as an ordinary run under one sweep directory
(torch-free).

``tuiprune sweep CONFIG …`` checks the whole grid, writes the sweep directory and starts the
driver (:mod:`tuiprune.sweep_driver`) detached, like ``watch CONFIG`` starts an engine: in its
own session, its output in ``SWEEP_DIR/sweep.log``, so closing the terminal or an SSH hang-up
does not stop it. It prints where the sweep is and returns. ``--foreground`` runs the driver in
this process instead (for scripts and tests) and ends with the sweep's summary and exit status
0 (all completed), 1 (a member did not complete) or 3 (stopped). ``--resume SWEEP_DIR`` drives
an existing sweep again: completed members are skipped, the rest start or resume.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import List, Optional

from engine.config import check_output_dir, dumps, resolve
from engine.errors import UserError
from engine.pidfile import engine_alive, read_pidfile, write_pidfile
from engine.sweepdir import (SWEEP_LOG, Sweep, member_config, new_sweep_dir, plan_members,
                             read_sweep, write_sweep)
from tuiprune.format import printable
from tuiprune.launch import spawn_detached
from tuiprune.ls_command import render, summary_lines
from tuiprune.sweep_driver import Driver
from tuiprune.sweep_plan import Plan, describe_grid, plan_sweep
from tuiprune.sweep_slots import Slots, plan_slots


def sweep_main(config: Optional[Path], overrides: List[str], grids: List[str],
               parallel: Optional[int] = None, dry_run: bool = False, yes: bool = False,
               resume: Optional[Path] = None, foreground: bool = False) -> int:
    """Entry point of ``tuiprune sweep``; returns the exit status."""
    if parallel is not None and parallel < 1:
        raise UserError(f"--parallel {parallel}: give 1 or more members to run at once")
    if resume is not None:
        if config is not None or overrides or grids:
            raise UserError("give either CONFIG (a new sweep) or --resume SWEEP_DIR, not both: "
                            "a sweep resumes with the config and grid it was made with")
        sweep = read_sweep(Path(resume).resolve())
        slots = plan_slots(_devices(sweep), parallel or sweep.parallel)
        if dry_run:
            return _print_resume_plan(sweep)
        return _drive(sweep, slots) if foreground else _detach(sweep, slots)
    if config is None:
        raise UserError("missing CONFIG: `tuiprune sweep configs/seed_grid.toml`, `tuiprune "
                        "sweep demo`, or `tuiprune sweep --resume SWEEP_DIR`")
    plan = plan_sweep(config, overrides, grids, yes)
    slots = plan_slots({c["run"]["device"] for c in plan.members}, parallel or 1)
    if dry_run:
        return _print_plan(plan, slots)
    check_output_dir(plan.base)
    sweep = write_sweep(new_sweep_dir(plan.base).resolve(), plan.base["run"]["name"],
                        plan.grid, plan.base, time.time(), slots.count)
    return _drive(sweep, slots) if foreground else _detach(sweep, slots)


def _devices(sweep: Sweep) -> set:
    try:
        return {resolve(member_config(sweep.base, m.values))["run"]["device"]
                for m in sweep.members}
    except UserError as exc:
        raise UserError(f"{sweep.path}: a member's config is not valid any more ({exc})") \
            from None


def _drive(sweep: Sweep, slots: Slots) -> int:
    _header(sweep, slots, detached=False)
    driver = Driver(sweep, slots)
    code = driver.run()
    try:
        render(driver.rows, sys.stdout, prefix_sweep=False)
        for line in summary_lines(driver.rows):
            print(line)
        sys.stdout.flush()
    except OSError:
        pass
    return code


def _detach(sweep: Sweep, slots: Slots) -> int:
    """Start the driver in its own session (output to ``sweep.log``) and return."""
    if engine_alive(sweep.path):
        raise UserError(f"{sweep.path} is being run by its driver (pid "
                        f"{read_pidfile(sweep.path)['pid']}); follow it with `tuiprune ls "
                        f"{sweep.path}` or stop it with `tuiprune stop {sweep.path}`")
    proc = spawn_detached(["sweep", "--resume", str(sweep.path), "--foreground", "--parallel",
                           str(slots.count)], sweep.path / SWEEP_LOG)
    write_pidfile(sweep.path, proc.pid)
    _header(sweep, slots, detached=True)
    return 0


def _header(sweep: Sweep, slots: Slots, detached: bool) -> None:
    where = printable(sweep.path)
    print(f"sweep {printable(sweep.path.name)}: {describe_grid(sweep.grid, slots.count)}")
    if detached:
        print(f"  runs in the background (its log: {where}/{SWEEP_LOG})")
    for label, command in (("follow", f"tuiprune ls {where}"),
                           ("stop", f"tuiprune stop {where}"),
                           ("resume", f"tuiprune sweep --resume {where}")):
        print(f"  {label:<7} {command}")
    sys.stdout.flush()


def _print_plan(plan: Plan, slots: Slots) -> int:
    print("# base configuration (every member's start)")
    print(dumps(plan.base))
    print(f"# {describe_grid(plan.grid, slots.count)}")
    for member in plan_members(Path("."), plan.grid):
        shown = "  ".join(f"{k}={v!r}" for k, v in member.values.items())
        print(f"{printable(member.name):<40} {printable(shown)}")
    for slot in range(slots.count if slots.describe(0) else 0):
        print(f"# slot {slot}: {slots.describe(slot)}")
    return 0


def _print_resume_plan(sweep: Sweep) -> int:
    from tuiprune.runlist import sweep_rows

    rows = sweep_rows(sweep)
    render(rows, sys.stdout, prefix_sweep=False)
    for line in summary_lines(rows):
        print(line)
    return 0
