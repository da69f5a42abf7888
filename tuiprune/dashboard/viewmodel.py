"""The dashboard's view model: what the widgets draw, small and bounded (no Textual here)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, List, Optional

from tuiprune.dashboard.series import BoundedSeries

LOG_CAPACITY = 1000
LAMBDA_POINTS = 256
BATCH_POINTS = 256

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
class StateView:
    index: int
    epochs: Optional[int] = None
    status: str = PENDING
    points: List[EpochPoint] = field(default_factory=list)
    best_val_acc: Optional[float] = None
    best_epoch: Optional[int] = None
    final_val_acc: Optional[float] = None
    test_acc: Optional[float] = None
    sparsity_start: Optional[float] = None
    sparsity_end: Optional[float] = None
    rewound_to: Optional[str] = None
    squeezing: Optional[Dict[str, Any]] = None
    lambdas: BoundedSeries = field(default_factory=lambda: BoundedSeries(LAMBDA_POINTS))
    lambda_last: Optional[Dict[str, Any]] = None
    pruned: Optional[Structure] = None
    hard_cut: Optional[Structure] = None
    seconds: Optional[float] = None

    @property
    def epochs_done(self) -> int:
        return len(self.points)


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
class RunView:
    run_id: str = ""
    name: str = ""
    model: Dict[str, Any] = field(default_factory=dict)
    data: Dict[str, Any] = field(default_factory=dict)
    method: str = ""
    sorting: str = ""
    criterion: str = ""
    head_ratio: List[float] = field(default_factory=list)
    mlp_ratio: List[float] = field(default_factory=list)
    device: str = ""
    host: str = ""
    pid: Optional[int] = None
    batches_per_epoch: Optional[int] = None
    started_at: Optional[float] = None
    last_time: Optional[float] = None
    status: str = WAITING
    ended: Optional[Dict[str, Any]] = None
    current_state: Optional[int] = None
    states: List[StateView] = field(default_factory=list)
    progress: Progress = field(default_factory=Progress)
    log: Deque[LogEntry] = field(default_factory=lambda: deque(maxlen=LOG_CAPACITY))
    warnings: int = 0
    errors: int = 0
    bad_lines: int = 0
    bad_events: int = 0
    events: int = 0
    newer_schema: Optional[int] = None
    stop_requested: bool = False

    def state(self, index: int) -> StateView:
        """The view of state ``index``, created (with those before it) on first use."""
        while len(self.states) <= index:
            self.states.append(StateView(len(self.states)))
        return self.states[index]

    @property
    def is_rsst(self) -> bool:
        return self.method.lower() == "rsst"

    @property
    def finished(self) -> bool:
        return self.status in (STOPPED, COMPLETED, FAILED, LOST)
