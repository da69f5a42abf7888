"""The dashboard's view model: what the widgets draw, small and bounded (no Textual here).

Every string in it has passed :func:`tuiprune.format.printable` (the reducer is the boundary
between the log and the screen), and every number came from a validated event. What the user
does with the screen (selection, stop requested, messages) is not here: it lives in
:class:`tuiprune.dashboard.context.Context`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Deque, Dict, List, Optional

from engine.series import BoundedSeries
from tuiprune.dashboard.sysview import SystemView

LOG_CAPACITY = 1000
LAMBDA_POINTS = 256
BATCH_POINTS = 256
PROBLEMS_KEPT = 5

# Run statuses (header) and state statuses (strip).
WAITING, RUNNING, STOPPED, COMPLETED, FAILED, LOST = (
    "waiting", "running", "stopped", "completed", "failed", "engine lost")
PENDING, ACTIVE, DONE = "pending", "running", "done"


@dataclass
class EpochPoint:
    state: int
    epoch: int
    train_acc: Optional[float]
    val_acc: Optional[float]
    train_loss: Optional[float] = None
    val_loss: Optional[float] = None
    test_acc: Optional[float] = None
    seconds: Optional[float] = None
    images_per_s: Optional[float] = None
    best: bool = False


@dataclass
class LayerRow:
    block: int
    attn_sparsity: Optional[float]
    heads_kept: Optional[int]
    heads_total: Optional[int]
    mlp_sparsity: Optional[float]
    neurons_kept: Optional[int]
    neurons_total: Optional[int]


@dataclass
class Structure:
    """A structured mask from a ``pruned`` or ``hard_cut`` event."""

    kind: str  # "pruned" | "hard_cut"
    state: int
    applied: bool
    sparsity: Optional[float]
    zeros: Optional[int]
    total: Optional[int]
    heads_kept: Optional[int]
    heads_total: Optional[int]
    neurons_kept: Optional[int]
    neurons_total: Optional[int]
    layers: List[LayerRow]
    val_acc_before: Optional[float] = None
    val_acc_after: Optional[float] = None
    residual_norm: Optional[float] = None


@dataclass
class Squeeze:
    """What RSST squeezes toward its target: weights, heads and neurons."""

    regularized: Optional[int]
    heads: Optional[int]
    neurons: Optional[int]


@dataclass
class LambdaNow:
    """The last ``lambda`` event of a state."""

    value: Optional[float]
    step: Optional[int]
    steps: Optional[int]
    squeeze: Squeeze


@dataclass
class RunEnd:
    """What ``run_ended`` said (``status`` as written, made printable)."""

    status: str
    best_val_acc: Optional[float]
    final_val_acc: Optional[float]
    test_acc: Optional[float]
    sparsity: Optional[float]
    seconds: Optional[float]
    message: str


@dataclass
class StateView:
    index: int
    epochs: Optional[int] = None
    status: str = PENDING
    points: Dict[int, EpochPoint] = field(default_factory=dict)  # epoch -> its point
    best_val_acc: Optional[float] = None
    best_epoch: Optional[int] = None
    final_val_acc: Optional[float] = None
    test_acc: Optional[float] = None
    sparsity_start: Optional[float] = None
    sparsity_end: Optional[float] = None
    rewound_to: Optional[str] = None
    squeezing: Optional[Squeeze] = None
    lambdas: BoundedSeries = field(default_factory=lambda: BoundedSeries(LAMBDA_POINTS))
    lambda_last: Optional[LambdaNow] = None
    pruned: Optional[Structure] = None
    hard_cut: Optional[Structure] = None
    seconds: Optional[float] = None

    @property
    def epochs_done(self) -> int:
        return len(self.points)

    def ordered_points(self) -> List[EpochPoint]:
        return [self.points[e] for e in sorted(self.points)]

    def last_point(self) -> Optional[EpochPoint]:
        return self.points[max(self.points)] if self.points else None


@dataclass
class Progress:
    """The epoch being trained now; ``loss``/``acc`` are its batch-level series."""

    state: Optional[int] = None
    epoch: Optional[int] = None
    batch: Optional[int] = None  # index of the last batch seen
    batches: Optional[int] = None
    images_per_s: Optional[float] = None
    lr: Optional[float] = None
    started_at: Optional[float] = None
    last_time: Optional[float] = None
    loss: BoundedSeries = field(default_factory=lambda: BoundedSeries(BATCH_POINTS))
    acc: BoundedSeries = field(default_factory=lambda: BoundedSeries(BATCH_POINTS))

    def start_epoch(self, state: int, epoch: int, batches: Optional[int],
                    lr: Optional[float], time: Optional[float]) -> None:
        self.state, self.epoch, self.batches, self.lr = state, epoch, batches, lr
        self.batch = None
        self.images_per_s = None
        self.started_at = self.last_time = time
        self.loss.clear()
        self.acc.clear()


@dataclass
class LogEntry:
    time: Optional[float]
    level: str  # "info" | "warning" | "error"
    text: str
    where: str = ""


@dataclass
class Changes:
    """Counters the reducer bumps per part of the view, so each widget redraws only when
    what it draws may have changed."""

    run: int = 0  # identity, status, end of the run (header, strip, progress)
    states: int = 0  # state statuses and epoch points (strip, accuracy, progress)
    progress: int = 0  # the current epoch's batches (progress, header's ETA)
    lam: int = 0  # λ updates and hard cuts (λ panel)
    structure: int = 0  # pruning steps and hard cuts (sparsity)
    log: int = 0  # log entries, malformed-line counts (log pane)
    system: int = 0  # system samples (system pane)


@dataclass
class RunView:
    run_id: str = ""
    name: str = ""
    model_name: str = ""
    dataset: str = ""
    method: str = ""
    sorting: str = ""
    criterion: str = ""
    head_ratio: List[float] = field(default_factory=list)
    mlp_ratio: List[float] = field(default_factory=list)
    device: str = ""
    host: str = ""
    world_size: Optional[int] = None  # ranks of a distributed run
    hosts: List[str] = field(default_factory=list)  # one per rank
    remote_host: str = ""  # the engine runs on this other host (its pid file says so)
    pid: Optional[int] = None
    batches_per_epoch: Optional[int] = None
    started_at: Optional[float] = None
    last_time: Optional[float] = None
    status: str = WAITING
    ended: Optional[RunEnd] = None
    current_state: Optional[int] = None
    states: List[StateView] = field(default_factory=list)
    progress: Progress = field(default_factory=Progress)
    log: Deque[LogEntry] = field(default_factory=lambda: deque(maxlen=LOG_CAPACITY))
    warnings: int = 0
    errors: int = 0
    malformed: int = 0  # lines of the log skipped as malformed
    problems: List[str] = field(default_factory=list)  # the first few reasons
    torn: bool = False  # the log ends in an unterminated line (never read)
    events: int = 0
    newer_schema: Optional[int] = None
    system: SystemView = field(default_factory=SystemView)
    changes: Changes = field(default_factory=Changes)

    def state(self, index: int) -> StateView:
        """The view of state ``index`` (a validated, bounded index), created with those before
        it on first use."""
        while len(self.states) <= index:
            self.states.append(StateView(len(self.states)))
        return self.states[index]

    @property
    def is_rsst(self) -> bool:
        return self.method.lower() == "rsst"

    @property
    def finished(self) -> bool:
        """The run has ended (whatever its ``run_ended`` status says), or its engine is lost."""
        return self.ended is not None or self.status == LOST
