"""A whole event log folded once into what every after-the-fact reader needs (torch-free).

:func:`read_log` streams ``RUN_DIR/events.jsonl`` through :func:`engine.logread.iter_chunks`
(validated events only; malformed lines counted, a torn tail flagged) into a :class:`RunLog`:

- the report (every section and verification row),
- the headless printer's end-of-run summary (:meth:`RunLog.summary_rows`),
- the engine's resume scan (``next_seq``, ``status``, ``kinds``, ``durable``,
  ``last_state_ended``),
- a run browser (``status``, ``states_done``/``states_total``, ``best_val_acc``,
  ``final_sparsity``, ``images_per_s``, ``started_time``).

Memory stays bounded on a long log: ``batch`` events are never kept, ``lambda`` and
``system`` events only as statistics and bounded series (``engine.series``), messages and
checkpoints as the last :data:`KEEP` plus a count, and the per-epoch and per-layer rows stop
being kept past :data:`MAX_ROWS` (counted in ``dropped``).

:func:`structure_in_force` is the one rule for "which structure do the weights of state N
hold" (see its docstring); :meth:`RunLog.structure_in_force` applies it to a folded log.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Deque, Dict, Iterable, List, Mapping, Optional, Set, Tuple

from engine.logread import MAX_PROBLEMS, Chunk, iter_chunks
from engine.schema import DURABLE, SCHEMA_VERSION, durable_key
from engine.series import SERIES_POINTS, BoundedSeries, SystemTrace

KEEP = 100          # messages, checkpoints, resumes and seq gaps kept (the most recent)
MAX_ROWS = 200_000  # epoch rows + layer rows kept in all (far above any real run)
PROBLEMS_KEPT = 4 * MAX_PROBLEMS


class Recent:
    """The last :data:`KEEP` items of a stream, and how many there were in all."""

    def __init__(self, keep: Optional[int] = None) -> None:
        self.items: Deque[dict] = deque(maxlen=KEEP if keep is None else keep)
        self.count = 0

    def add(self, item) -> None:
        self.items.append(item)
        self.count += 1

    def __iter__(self):
        return iter(self.items)

    def __bool__(self) -> bool:
        return self.count > 0

    @property
    def dropped(self) -> int:
        """How many older items are counted but no longer kept."""
        return self.count - len(self.items)


@dataclass
class LambdaStats:
    """A state's ``lambda`` events as statistics (the events themselves are not kept)."""

    first: Optional[dict] = None
    last: Optional[dict] = None
    events: int = 0
    ramps: int = 0        # the ``step`` counter restarted (ramp = "epoch") or began
    # (updates so far in the state, λ), down-sampled
    series: BoundedSeries = field(default_factory=lambda: BoundedSeries(SERIES_POINTS))
    _done: int = 0        # optimizer steps of finished ramps
    _ramp_max: int = 0    # largest ``step`` of the ramp in progress

    def add(self, ev: dict) -> None:
        step = ev["step"]
        if self.first is None:
            self.first = ev
        self.events += 1
        if step is not None:
            prev = self.last["step"] if self.last is not None else None
            if prev is None or step < prev:
                self._done += self._ramp_max
                self._ramp_max = 0
                self.ramps += 1
            self._ramp_max = max(self._ramp_max, step)
            if ev["value"] is not None:
                self.series.add(self._done + step, ev["value"])
        self.last = ev

    @property
    def updates(self) -> int:
        """Optimizer steps that updated λ, summed over ramp restarts (the events are
        throttled, the ``step`` counter is not)."""
        return self._done + self._ramp_max


@dataclass
class StateLog:
    """What the log says about one pruning state."""

    state: int
    started: Optional[dict] = None
    epochs: Dict[int, dict] = field(default_factory=dict)    # epoch -> its epoch_ended
    epochs_started: Set[int] = field(default_factory=set)
    duplicate_epochs: List[int] = field(default_factory=list)
    ended: Optional[dict] = None
    hard_cut: Optional[dict] = None
    lam: LambdaStats = field(default_factory=LambdaStats)

    @property
    def planned_epochs(self) -> Optional[int]:
        return self.started["epochs"] if self.started is not None else None

    @property
    def last_epoch(self) -> Optional[dict]:
        return self.epochs[max(self.epochs)] if self.epochs else None


@dataclass
class RunLog:
    """A whole event log, folded (see the module docstring)."""

    path: Path
    started: Optional[dict] = None
    ended: Optional[dict] = None          # run_ended, unless a resume came after it
    last_run_ended: Optional[dict] = None  # the last run_ended, even before a resume
    states: Dict[int, StateLog] = field(default_factory=dict)
    pruned: Dict[int, dict] = field(default_factory=dict)        # step -> pruned event
    resumed: Recent = field(default_factory=Recent)
    warnings: Recent = field(default_factory=Recent)
    errors: Recent = field(default_factory=Recent)
    checkpoints: Recent = field(default_factory=Recent)
    events: int = 0
    malformed: int = 0
    problems: List[str] = field(default_factory=list)
    torn: bool = False
    first_seq: Optional[int] = None
    last_seq: Optional[int] = None
    max_seq: Optional[int] = None
    seq_gaps: Recent = field(default_factory=Recent)   # (after seq, next seq) pairs
    seq_backward: int = 0      # seq not above the one before (two writers, or a replayed file)
    newer_version: Optional[int] = None
    kinds: Set[str] = field(default_factory=set)
    durable: Set[tuple] = field(default_factory=set)
    duplicates: Recent = field(default_factory=Recent)  # durable events seen again
    last_state_ended: Optional[dict] = None
    dropped: int = 0           # epoch/layer rows not kept (MAX_ROWS reached)
    system: SystemTrace = field(default_factory=SystemTrace)
    _rows: int = 0

    # ------------------------------------------------------------------ derived values
    @property
    def run_dir(self) -> Path:
        return self.path.parent

    @property
    def next_seq(self) -> int:
        """The ``seq`` a writer appending to this log uses next (above every seq in it)."""
        return 0 if self.max_seq is None else self.max_seq + 1

    @property
    def status(self) -> Optional[str]:
        """How the run ended (``run_ended.status``); None while no run_ended follows the last
        start or resume (running, or the engine died without a word)."""
        return self.ended["status"] if self.ended is not None else None

    @property
    def last_status(self) -> Optional[str]:
        """The status of the last ``run_ended`` in the log, even if a resume followed it."""
        return self.last_run_ended["status"] if self.last_run_ended is not None else None

    @property
    def method(self) -> Optional[str]:
        if self.started is not None and self.started["method"] is not None:
            return self.started["method"]
        return next((s.started["method"] for s in self.states.values()
                     if s.started is not None and s.started["method"] is not None), None)

    @property
    def states_total(self) -> Optional[int]:
        return self.started["states"] if self.started is not None else None

    @property
    def states_done(self) -> int:
        return sum(1 for s in self.states.values() if s.ended is not None)

    @property
    def started_time(self) -> Optional[float]:
        return self.started["time"] if self.started is not None else None

    @property
    def best_val_acc(self) -> Optional[float]:
        """The best val acc of the last state that has one (state_ended, else its epochs)."""
        for s in sorted(self.states, reverse=True):
            st = self.states[s]
            if st.ended is not None and st.ended["best_val_acc"] is not None:
                return st.ended["best_val_acc"]
            accs = [e["val_acc"] for e in st.epochs.values() if e["val_acc"] is not None]
            if accs:
                return max(accs)
        return None

    @property
    def final_sparsity(self) -> Optional[float]:
        """The sparsity of the model at the end: run_ended's, else the last state's."""
        if self.ended is not None and self.ended["sparsity"] is not None:
            return self.ended["sparsity"]
        for s in sorted(self.states, reverse=True):
            for ev in (self.states[s].ended, self.states[s].started):
                if ev is not None and ev["sparsity"] is not None:
                    return ev["sparsity"]
        return None

    @property
    def images_per_s(self) -> Optional[float]:
        """Training throughput of the last epoch in the log."""
        for s in sorted(self.states, reverse=True):
            last = self.states[s].last_epoch
            if last is not None:
                return last["images_per_s"]
        return None

    def state(self, s: int) -> StateLog:
        if s not in self.states:
            self.states[s] = StateLog(s)
        return self.states[s]

    def ratio(self, key: str, step: int) -> Optional[float]:
        """The configured ``head_ratio``/``mlp_ratio`` of pruning ``step`` (run_started)."""
        values = self.started[key] if self.started is not None else None
        return values[step] if values is not None and step < len(values) else None

    def summary_rows(self) -> List[dict]:
        """Per state: last train/val acc, best/final val acc, test acc, sparsity, seconds
        (the headless printer's end-of-run table)."""
        rows = []
        for s, st in sorted(self.states.items()):
            last, end = st.last_epoch or {}, st.ended or {}
            rows.append({"state": s, "train_acc": last.get("train_acc"),
                         "val_acc": last.get("val_acc"),
                         "best_val_acc": end.get("best_val_acc"),
                         "final_val_acc": end.get("final_val_acc"),
                         "test_acc": end.get("test_acc"), "sparsity": end.get("sparsity"),
                         "seconds": end.get("seconds")})
        return rows

    def structure_in_force(self, state: int) -> Optional[dict]:
        """The ``pruned`` or ``hard_cut`` event whose structure the weights hold at the end of
        ``state`` (what ``state<N>_best.pt`` holds); None while the model is dense."""
        hard_cuts = [s for s, st in self.states.items() if st.hard_cut is not None]
        applied = {k: bool(ev["applied"]) for k, ev in self.pruned.items()}
        last = self.states_total - 1 if self.states_total is not None else max(
            self.states, default=None)
        found = structure_in_force(state, applied, hard_cuts, last)
        if found is None:
            return None
        kind, index = found
        return self.pruned[index] if kind == "pruned" else self.states[index].hard_cut

    # ------------------------------------------------------------------ folding
    def add_chunk(self, chunk: Chunk) -> None:
        self.malformed += chunk.malformed
        self.problems.extend(chunk.problems[:PROBLEMS_KEPT - len(self.problems)])
        self.torn = chunk.torn if chunk.caught_up else self.torn
        for ev in chunk.events:
            self.add(ev)

    def add(self, ev: dict) -> None:
        """Fold one validated event."""
        self.events += 1
        kind = ev["event"]
        self.kinds.add(kind)
        self._seq(ev["seq"])
        if ev["v"] > SCHEMA_VERSION:
            self.newer_version = max(ev["v"], self.newer_version or 0)
        if kind in DURABLE:
            key = durable_key(ev)
            if key in self.durable:
                self.duplicates.add(key)
            self.durable.add(key)
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(self, ev)

    def _seq(self, seq: int) -> None:
        if self.first_seq is None:
            self.first_seq = seq
        if self.last_seq is not None:
            if seq <= self.last_seq:
                self.seq_backward += 1
            elif self.max_seq is not None and seq > self.max_seq + 1:
                self.seq_gaps.add((self.max_seq, seq))
        self.last_seq = seq
        self.max_seq = seq if self.max_seq is None else max(self.max_seq, seq)

    def _keep_rows(self, n: int) -> bool:
        """Whether ``n`` more epoch/layer rows fit in :data:`MAX_ROWS`."""
        if self._rows + n > MAX_ROWS:
            self.dropped += n
            return False
        self._rows += n
        return True

    def _epoch_ended(self, ev: dict) -> None:
        st = self.state(ev["state"])
        epoch = ev["epoch"]
        if epoch in st.epochs:
            st.duplicate_epochs.append(epoch)
            st.epochs[epoch] = ev
        elif self._keep_rows(1):
            st.epochs[epoch] = ev

    def _epoch_started(self, ev: dict) -> None:
        if self._keep_rows(1):
            self.state(ev["state"]).epochs_started.add(ev["epoch"])

    def _pruned(self, ev: dict) -> None:
        if ev["step"] in self.pruned or self._keep_rows(len(ev["layers"] or ())):
            self.pruned[ev["step"]] = ev

    def _hard_cut(self, ev: dict) -> None:
        st = self.state(ev["state"])
        if st.hard_cut is not None or self._keep_rows(len(ev["layers"] or ())):
            st.hard_cut = ev

    def _state_started(self, ev: dict) -> None:
        self.state(ev["state"]).started = ev

    def _state_ended(self, ev: dict) -> None:
        self.state(ev["state"]).ended = ev
        self.last_state_ended = ev

    def _lambda(self, ev: dict) -> None:
        self.state(ev["state"]).lam.add(ev)

    def _run_started(self, ev: dict) -> None:
        self.started = ev

    def _run_ended(self, ev: dict) -> None:
        self.ended = self.last_run_ended = ev

    def _resumed(self, ev: dict) -> None:
        # a resume continues a run: an earlier run_ended no longer describes it
        self.resumed.add(ev)
        self.ended = None


_HANDLERS = {
    "epoch_ended": RunLog._epoch_ended, "epoch_started": RunLog._epoch_started,
    "pruned": RunLog._pruned, "hard_cut": RunLog._hard_cut,
    "state_started": RunLog._state_started, "state_ended": RunLog._state_ended,
    "lambda": RunLog._lambda, "run_started": RunLog._run_started,
    "run_ended": RunLog._run_ended, "resumed": RunLog._resumed,
    "warning": lambda log, ev: log.warnings.add(ev),
    "error": lambda log, ev: log.errors.add(ev),
    "checkpoint": lambda log, ev: log.checkpoints.add(ev),
    "system": lambda log, ev: log.system.add(ev),
}


def read_log(path: Path) -> RunLog:
    """Fold the log at ``path`` (``events.jsonl``); raises OSError when it cannot be read."""
    log = RunLog(Path(path))
    for chunk in iter_chunks(Path(path), envelope_only=("batch",)):  # no handler reads them
        log.add_chunk(chunk)
    return log


def structure_in_force(state: int, applied: Mapping[int, bool], hard_cuts: Iterable[int],
                       last_state: Optional[int]) -> Optional[Tuple[str, int]]:
    """Which structure the weights hold at the end of ``state``: ``("pruned", step)``,
    ``("hard_cut", state)``, or None (dense). This is what ``state<N>_best.pt`` holds.

    ``applied``: pruning step → its ``pruned.applied``; ``hard_cuts``: states with a
    ``hard_cut``; ``last_state``: the run's last state (``run_started.states - 1``).
    Each structure takes effect at a point of the run (docs/algorithm.md):

    - an applied step ``k`` (Refill) at the start of state ``k + 1``; an applied step after
      the last state (``prune_last``, Refill or RSST) at the end of that state, after its hard
      cut;
    - an RSST hard cut at the end of its state;
    - an RSST target (``applied`` false) takes no effect itself: its hard cut does.

    The structure in force is the latest one that took effect by the end of ``state``.
    """
    found: List[Tuple[Tuple[int, int], str, int]] = []
    for step, is_applied in applied.items():
        if not is_applied:
            continue
        at = (step, 2) if last_state is not None and step >= last_state else (step + 1, 0)
        found.append((at, "pruned", step))
    found += [((s, 1), "hard_cut", s) for s in hard_cuts]
    found = [f for f in found if f[0][0] <= state]
    if not found:
        return None
    _, kind, index = max(found)
    return kind, index
