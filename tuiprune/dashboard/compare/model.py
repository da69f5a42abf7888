"""The compare screen's data (no Textual): the compared runs, each folded by a dashboard
:class:`~tuiprune.dashboard.reducer.Reducer` of its own, and what the panels show, computed
from their view models.

Memory stays bounded per run as in the dashboard (every epoch point and pruning step, bounded
series and log). The per-layer table follows the report's rule: a state shows the structure
in force in the model it ends with (``engine.runlog.structure_in_force``), so Refill's step
``k`` and RSST's hard cut of the same target line up in state ``k + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from engine.rundir import EVENTS_FILE
from engine.runlog import structure_in_force
from tuiprune.dashboard import viewmodel as vm
from tuiprune.dashboard.glyphs import Glyphs
from tuiprune.dashboard.reducer import Reducer
from tuiprune.dashboard.viewmodel import LayerRow, RunView, StateView, Structure
from tuiprune.palette import RUN_COLOURS, run_letter
from tuiprune.runlist import differing_keys

BEST, FINAL = "best", "final"
VALUE_LABEL = {BEST: "best val", FINAL: "final val"}  # final: after the hard cut (RSST)
# the dashboard's run statuses in the run table's words (tuiprune ls)
STATUS_WORD = {vm.RUNNING: "live", vm.LOST: "lost", vm.WAITING: "waiting"}

Point = Tuple[float, float]


@dataclass
class ComparedRun:
    """One compared run. ``slot`` (0–5) gives its letter and colour everywhere."""

    slot: int
    path: Path
    name: str
    config: Dict[str, Any] = field(default_factory=dict)
    reducer: Reducer = field(default_factory=Reducer)

    @property
    def view(self) -> RunView:
        return self.reducer.view

    @property
    def letter(self) -> str:
        return run_letter(self.slot)

    @property
    def colour(self) -> str:
        return RUN_COLOURS[self.slot % len(RUN_COLOURS)]

    def mark(self, g: Glyphs) -> str:
        """What stands for the run in charts and legends: its letter in ASCII, else a dot."""
        return self.letter if g.ascii else "●"

    @property
    def status(self) -> str:
        """live, completed, stopped, failed, lost, pending (not started), waiting (started,
        nothing logged yet)."""
        status = self.view.status
        if status == vm.WAITING and not (self.path / EVENTS_FILE).exists():
            return "pending"
        return STATUS_WORD.get(status, status)


def ended(st: StateView) -> bool:
    return st.status == vm.DONE and st.sparsity_end is not None


def state_value(st: StateView, mode: str) -> Optional[float]:
    """The val accuracy a state stands for: its best epoch's (``best``), or the model it ends
    with (``final``: after the RSST hard cut, else its last epoch)."""
    if mode == BEST:
        return st.best_val_acc
    if st.hard_cut is not None and st.hard_cut.val_acc_after is not None:
        return st.hard_cut.val_acc_after
    return st.final_val_acc


def sparsity_points(view: RunView, mode: str) -> List[Point]:
    """(sparsity at the end of the state, its val accuracy) of every state that has ended."""
    out = []
    for st in view.states:
        value = state_value(st, mode) if ended(st) else None
        if value is not None:
            out.append((st.sparsity_end, value))
    return out


def _state_sizes(view: RunView) -> List[int]:
    return [max(st.epochs or 0, st.epochs_done) for st in view.states]


def state_starts(view: RunView) -> List[int]:
    """Epochs before each state (the x axis counts epochs across states, as the dashboard)."""
    sizes = _state_sizes(view)
    return [0, *accumulate(sizes)][:len(sizes)]


def planned_epochs(view: RunView) -> int:
    """Epochs of all states (those planned, or done when more)."""
    return sum(_state_sizes(view))


def epoch_points(view: RunView) -> List[Point]:
    """(epoch since the start, val accuracy) of every finished epoch."""
    out = []
    for st, start in zip(view.states, state_starts(view)):
        out += [(start + pt.epoch + 1, pt.val_acc) for pt in st.ordered_points()
                if pt.val_acc is not None]
    return out


def structure_at_end(view: RunView, state: int) -> Optional[Structure]:
    """The structure in force in the model ``state`` ends with; None while it is dense."""
    applied = {k: s.pruned.applied for k, s in enumerate(view.states) if s.pruned is not None}
    cuts = [k for k, s in enumerate(view.states) if s.hard_cut is not None]
    found = structure_in_force(state, applied, cuts, len(view.states) - 1)
    if found is None:
        return None
    kind, k = found
    return view.states[k].hard_cut if kind == "hard_cut" else view.states[k].pruned


def heads_per_block(view: RunView) -> Dict[int, int]:
    """Block -> heads, from any structure the run has logged (the view keeps no model)."""
    out: Dict[int, int] = {}
    for st in view.states:
        for s in (st.pruned, st.hard_cut):
            for layer in s.layers if s is not None else ():
                if layer.heads_total is not None:
                    out[layer.block] = layer.heads_total
    return out


@dataclass
class LayerCell:
    """One run's block in the per-layer table: heads kept / heads, MLP sparsity %;
    ``known`` False while the run's state has not ended."""

    known: bool
    heads_kept: Optional[int] = None
    heads_total: Optional[int] = None
    mlp_sparsity: Optional[float] = None


def layer_table(runs: Sequence[ComparedRun], state: int
                ) -> Tuple[List[int], Dict[int, List[LayerCell]], List[LayerCell]]:
    """For ``state``: the blocks, each block's cell per run, and per run a whole-model cell
    (heads kept of all heads, overall sparsity in place of the MLP's)."""
    rows: Dict[int, List[LayerCell]] = {}
    totals: List[LayerCell] = []
    per_run: List[Tuple[ComparedRun, bool, Optional[Structure]]] = []
    for run in runs:
        states = run.view.states
        done = state < len(states) and ended(states[state])
        per_run.append((run, done, structure_at_end(run.view, state) if done else None))
    blocks = sorted({layer.block for _, _, s in per_run if s is not None for layer in s.layers}
                    | {b for run, done, s in per_run if done and s is None
                       for b in heads_per_block(run.view)})
    for run, done, structure in per_run:
        by_block = {layer.block: layer for layer in structure.layers} if structure else {}
        dense_heads = heads_per_block(run.view)
        for b in blocks:
            rows.setdefault(b, []).append(_cell(done, by_block.get(b), dense_heads.get(b)))
        if structure is not None:
            totals.append(LayerCell(True, structure.heads_kept, structure.heads_total,
                                    structure.sparsity))
        else:
            heads = sum(dense_heads.values()) or None
            totals.append(LayerCell(done, heads, heads, 0.0 if done else None))
    return blocks, rows, totals


def _cell(done: bool, layer: Optional[LayerRow], dense_heads: Optional[int]) -> LayerCell:
    if not done:
        return LayerCell(False)
    if layer is None:  # dense in this state
        return LayerCell(True, dense_heads, dense_heads, 0.0)
    return LayerCell(True, layer.heads_kept, layer.heads_total, layer.mlp_sparsity)


def state_count(runs: Iterable[ComparedRun]) -> int:
    return max((len(r.view.states) for r in runs), default=0)


def last_ended_state(runs: Iterable[ComparedRun]) -> int:
    """The latest state that has ended in any run (0 when none has)."""
    return max((st.index for r in runs for st in r.view.states if ended(st)), default=0)


@dataclass
class _Config:
    config: Dict[str, Any]


def config_diff(runs: Sequence[ComparedRun]) -> List[str]:
    """The config keys whose values differ between the runs (those with a known config). A
    key left out and a key set to nothing are the same (a pending member's config comes from
    TOML, which has no null; a started run's from ``run_started``, which spells every key)."""
    return differing_keys(_Config({k: v for k, v in r.config.items() if v is not None})
                          for r in runs)


def change_key(runs: Iterable[ComparedRun]) -> Tuple:
    """Changes to what the panels draw: epoch points, states, structures, statuses (batch and
    λ updates are not among them)."""
    return tuple((r.view.changes.states, r.view.changes.structure, r.view.changes.run)
                 for r in runs)


@dataclass
class CompareContext:
    """What the compare screen's panels draw from: the runs, the glyphs, and what the user
    chose (the value the accuracy-vs-sparsity chart plots, the per-layer table's state)."""

    runs: List[ComparedRun]
    glyphs: Glyphs
    where: str = ""  # the directory the runs were picked from
    mode: str = BEST
    chosen: Optional[int] = None  # the per-layer table's state; None follows the runs
    message: str = ""

    @property
    def state(self) -> int:
        """The state of the per-layer table: the chosen one, else the latest that ended."""
        last = max(0, state_count(self.runs) - 1)
        return min(self.chosen, last) if self.chosen is not None else \
            min(last_ended_state(self.runs), last)

    def select(self, delta: int) -> None:
        last = max(0, state_count(self.runs) - 1)
        index = max(0, min(self.state + delta, last))
        self.chosen = None if index == last_ended_state(self.runs) else index

    def toggle_mode(self) -> None:
        self.mode = FINAL if self.mode == BEST else BEST
