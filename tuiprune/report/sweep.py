"""``tuiprune report SWEEP_DIR``: one comparison report of every member of a sweep
(``engine.sweepdir``), each member an ordinary run directory. Torch-free.

The seed report's tables with every run side by side: per state the val and test accuracy of
the model the state ends with, its sparsity and the heads kept; per layer, at the end of each
state, the attention and MLP sparsity. Runs are lettered A, B, … in the members table and
keep that letter (and, in the figures, one colour) everywhere; wide tables are split into
groups of :data:`GROUP` runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

from engine.rundir import EVENTS_FILE
from engine.sweepdir import Member, Sweep, read_sweep
from tuiprune import format as fmt
from tuiprune.report.checks import FAIL, PASS, SKIP, log_checks
from tuiprune.report.figdata import model_accuracy
from tuiprune.report.log import LoggedRun, read_run
from tuiprune.palette import run_letter as code
from tuiprune.report.mdtext import Md, heading, table, text

GROUP = 6  # runs per side-by-side table


@dataclass
class SweepRun:
    """A member and its run (None when it never started)."""

    member: Member
    run: Optional[LoggedRun]
    code: str = ""  # A, B, … (members with a log only)


def read_members(path) -> "tuple[Sweep, List[SweepRun]]":
    sweep = read_sweep(path)
    members, n = [], 0
    for m in sweep.members:
        run = read_run(m.run_dir) if (m.run_dir / EVENTS_FILE).is_file() else None
        members.append(SweepRun(m, run, code(n) if run is not None else ""))
        n += run is not None
    return sweep, members


def status(run: Optional[LoggedRun]) -> str:
    if run is None:
        return "not started"
    if run.log.status is not None:
        return run.log.status
    return {True: "running", False: "lost"}.get(run.engine_alive, "no run_ended")


def _grid_text(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_grid_text(v) for v in value) + "]"
    return text(value)


def members_table(sweep: Sweep, members: Sequence[SweepRun]) -> List[str]:
    keys = list(sweep.grid)
    rows = []
    for sr in members:
        log = sr.run.log if sr.run else None
        rows.append([sr.code or "–", sr.member.name] +
                    [_grid_text(sr.member.values.get(k)) for k in keys] +
                    [status(sr.run),
                     f"{log.states_done}/{fmt.count(log.states_total)}" if log else "--",
                     fmt.number(log.best_val_acc if log else None),
                     fmt.number(log.final_sparsity if log else None)])
    return heading(2, "Members") + table(
        ["", "Member"] + keys + ["Status", "States", "Best val acc %", "Final sparsity %"],
        rows, align="ll" + "l" * len(keys) + "lrrr") + [""]


def _groups(runs: Sequence[SweepRun]) -> List[Sequence[SweepRun]]:
    return [runs[i:i + GROUP] for i in range(0, len(runs), GROUP)] or [[]]


def _state_cells(sr: SweepRun, s: int) -> List[str]:
    log = sr.run.log
    st = log.states.get(s)
    if st is None or st.ended is None:
        return [fmt.NO_VALUE] * 4
    return [fmt.number(model_accuracy(st)), fmt.number(st.ended["test_acc"]),
            fmt.number(st.ended["sparsity"]), _heads(log, s)]


def _heads(log, s: int) -> str:
    """Heads kept / all heads in the model state ``s`` ends with."""
    ev = log.structure_in_force(s)
    if ev is not None:
        return fmt.ratio(ev["heads_kept"], ev["heads_total"])
    model = (log.started["model"] if log.started is not None else None) or {}
    total = sum(model.get("heads_per_block") or [])
    return fmt.ratio(total, total) if total else fmt.NO_VALUE


def per_state(runs: Sequence[SweepRun]) -> List[str]:
    out = heading(2, "Accuracy, sparsity and heads kept per state")
    states = sorted({s for sr in runs for s in sr.run.log.states})
    for group in _groups(runs):
        header = ["State"]
        for sr in group:
            header += [f"{sr.code} val acc %", f"{sr.code} test acc %", f"{sr.code} sparsity %",
                       f"{sr.code} heads kept"]
        rows = [[str(s)] + [c for sr in group for c in _state_cells(sr, s)] for s in states]
        out += table(header, rows) + [""]
    return out + [
        "Val acc: the model each state ends with (RSST: after its hard cut; Refill: the best "
        "epoch). Test acc: the state's best epoch. Sparsity: share of the prunable weights "
        "that are zero at the end of the state.", ""]


def _layer_cells(sr: SweepRun, s: int, block: int) -> List[str]:
    log = sr.run.log
    st = log.states.get(s)
    if st is None or st.ended is None:
        return [fmt.NO_VALUE] * 2
    ev = log.structure_in_force(s)
    if ev is None:
        return ["0.00", "0.00"]  # dense
    layer = next((x for x in ev["layers"] or () if x["block"] == block), None)
    if layer is None:
        return [fmt.NO_VALUE] * 2
    return [fmt.number(layer["attn_sparsity"]), fmt.number(layer["mlp_sparsity"])]


def _blocks(runs: Sequence[SweepRun]) -> int:
    most = 0
    for sr in runs:
        st = sr.run.log.started
        most = max(most, ((st["model"] or {}).get("blocks") or 0) if st is not None else 0)
    return most


def per_layer(runs: Sequence[SweepRun]) -> List[str]:
    out = []
    blocks = _blocks(runs)
    states = sorted({s for sr in runs for s, st in sr.run.log.states.items()
                     if st.ended is not None})
    for s in states:
        if all(sr.run.log.structure_in_force(s) is None for sr in runs):
            continue  # dense everywhere
        out += heading(3, f"Per layer at the end of state {s}")
        for group in _groups(runs):
            header = ["Block"] + [f"{sr.code} {what} %" for sr in group
                                  for what in ("attn", "MLP")]
            rows = [[str(b)] + [c for sr in group for c in _layer_cells(sr, s, b)]
                    for b in range(blocks)]
            out += table(header, rows) + [""]
    if not out:
        return []
    return heading(2, "Per-layer sparsity") + [
        "Share of each block's attention heads and MLP neurons pruned in the model the "
        "state ends with (0 while a run is dense).", ""] + out


def verification(runs: Sequence[SweepRun]) -> List[str]:
    rows = []
    for sr in runs:
        checks = log_checks(sr.run.log)
        failed = [c.name for c in checks if c.status == FAIL]
        rows.append([sr.code, sr.member.name, str(sum(c.status == PASS for c in checks)),
                     str(len(failed)), str(sum(c.status == SKIP for c in checks)),
                     "; ".join(failed) or "–"])
    return heading(2, "Verification (from the logs)") + table(
        ["", "Member", "Passed", "Failed", "Skipped", "Failed checks"], rows,
        align="llrrrl") + [
        "", "The log rows of each member's own report (`tuiprune report MEMBER_DIR` also "
        "checks the final checkpoint's weights).", ""]


def title(sweep: Sweep) -> str:
    return f"# Sweep report: {text(sweep.name)}"


def render(sweep: Sweep, members: Sequence[SweepRun], figures: List[str]) -> str:
    """The comparison report; ``figures``: the Markdown lines of the figures section."""
    runs = [sr for sr in members if sr.run is not None]
    grid = " · ".join(f"{text(k)} = {_grid_text(v)}" for k, v in sweep.grid.items())
    lines = [title(sweep), "", f"**Source**: sweep directory {text(sweep.path)} · "
             f"{len(members)} members, {len(runs)} with a log  ",
             Md(f"**Grid**: {grid}") if grid else "", ""]
    lines += members_table(sweep, members) + figures
    if runs:
        lines += per_state(runs) + per_layer(runs) + verification(runs)
    else:
        lines += ["_No member has started yet._", ""]
    return "\n".join(lines).rstrip() + "\n"
