"""What the report's figures plot, taken from a folded log (``engine.runlog``) as plain
numbers: no matplotlib here, so each series is tested against the log itself.

Every series is bounded: per-epoch points (the log's epoch rows, bounded by the fold), per-state
points, and the fold's down-sampled λ and ``system`` series.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from engine.runlog import RunLog, StateLog
from engine.series import SystemPoint


def epochs_per_state(log: RunLog) -> Optional[int]:
    """The configured epochs of every state (``run_started``), or None."""
    return log.started["epochs"] if log.started is not None else None


def state_offsets(log: RunLog) -> dict:
    """State → epochs before it over the whole run: ``state × epochs`` when the schedule is
    known (a missing epoch leaves a gap), else the epochs logged in earlier states."""
    per, out, done = epochs_per_state(log), {}, 0
    for s in sorted(log.states):
        out[s] = s * per if per else done
        done += max(len(log.states[s].epochs), log.states[s].planned_epochs or 0)
    return out


@dataclass
class EpochCurve:
    """Accuracy per epoch over the whole run. ``x``: epochs since the start (1 = the first
    epoch's end); ``steps``: x of each pruning step (between its state and the next);
    ``cuts``: (x, val before, val after) of each RSST hard cut."""

    x: List[float] = field(default_factory=list)
    train: List[Optional[float]] = field(default_factory=list)
    val: List[Optional[float]] = field(default_factory=list)
    test: List[Optional[float]] = field(default_factory=list)
    steps: List[float] = field(default_factory=list)
    cuts: List[Tuple[float, Optional[float], Optional[float]]] = field(default_factory=list)

    @property
    def has_test(self) -> bool:
        return any(v is not None for v in self.test)


def _state_end(offsets: dict, log: RunLog, s: int) -> float:
    st = log.states.get(s)
    per = epochs_per_state(log) or (st.planned_epochs if st else None)
    if per:
        return offsets.get(s, 0) + per + 0.5
    return offsets.get(s, 0) + (max(st.epochs) + 1 if st and st.epochs else 0) + 0.5


def epoch_curve(log: RunLog) -> EpochCurve:
    out = EpochCurve()
    offsets = state_offsets(log)
    for s, st in sorted(log.states.items()):
        for e, ev in sorted(st.epochs.items()):
            out.x.append(offsets[s] + e + 1)
            out.train.append(ev["train_acc"])
            out.val.append(ev["val_acc"])
            out.test.append(ev["test_acc"])
        if st.hard_cut is not None:
            cut = st.hard_cut
            out.cuts.append((_state_end(offsets, log, s), cut["val_acc_before"],
                             cut["val_acc_after"]))
    for k, ev in sorted(log.pruned.items()):
        out.steps.append(_state_end(offsets, log, ev["state"]))
    return out


def model_accuracy(st: StateLog) -> Optional[float]:
    """The val accuracy of the model a state ends with, at the sparsity it ends with: after
    the hard cut (RSST), else the state's best epoch (what ``state<N>_best.pt`` holds)."""
    if st.hard_cut is not None:
        return st.hard_cut["val_acc_after"]
    return st.ended["best_val_acc"] if st.ended is not None else None


def accuracy_vs_sparsity(log: RunLog) -> List[Tuple[int, float, float]]:
    """(state, sparsity %, val acc %) of every finished state."""
    out = []
    for s, st in sorted(log.states.items()):
        acc = model_accuracy(st)
        if st.ended is not None and st.ended["sparsity"] is not None and acc is not None:
            out.append((s, st.ended["sparsity"], acc))
    return out


@dataclass
class SparsityGrid:
    """Per-layer sparsity (percent) at the end of each state: ``attn[block][i]`` and
    ``mlp[block][i]`` for ``states[i]``; a dense state is 0."""

    states: List[int]
    attn: List[List[float]]
    mlp: List[List[float]]


def sparsity_grid(log: RunLog) -> Optional[SparsityGrid]:
    """None when the log says nothing about the blocks (no run_started, no pruning step)."""
    states = sorted(s for s, st in log.states.items() if st.ended is not None)
    structures = [log.structure_in_force(s) for s in states]
    blocks = (log.started["model"] or {}).get("blocks") if log.started is not None else None
    known = [len(ev["layers"] or ()) for ev in structures if ev is not None]
    blocks = blocks or max(known, default=0)
    if not states or not blocks:
        return None
    attn = [[0.0] * len(states) for _ in range(blocks)]
    mlp = [[0.0] * len(states) for _ in range(blocks)]
    for i, ev in enumerate(structures):
        for layer in (ev["layers"] or ()) if ev is not None else ():
            if layer["block"] < blocks:
                attn[layer["block"]][i] = layer["attn_sparsity"]
                mlp[layer["block"]][i] = layer["mlp_sparsity"]
    return SparsityGrid(states, attn, mlp)


def steps_per_state(log: RunLog) -> Optional[int]:
    """Optimizer steps of one state (epochs × batches per epoch), when the log says."""
    st = log.started
    if st is None or not st["epochs"] or not st["batches_per_epoch"]:
        return None
    return st["epochs"] * st["batches_per_epoch"]


def lambda_curves(log: RunLog) -> List[Tuple[int, List[float], List[float]]]:
    """(state, optimizer step over the run, λ) of every state with ``lambda`` events; the
    steps count from the run's start when the schedule is known, else from the state's."""
    per = steps_per_state(log)
    out = []
    for s, st in sorted(log.states.items()):
        points = st.lam.series.snapshot()
        if points:
            base = s * per if per else 0
            out.append((s, [base + x for x, _ in points], [y for _, y in points]))
    return out


def system_curve(log: RunLog) -> Tuple[List[float], List[SystemPoint]]:
    """(seconds since the run started, figures) of the log's ``system`` events."""
    points = log.system.series.snapshot()
    if not points:
        return [], []
    t0 = log.started_time if log.started_time is not None else points[0][0]
    return [x - t0 for x, _ in points], [y for _, y in points]
