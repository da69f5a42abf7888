"""The event log's schema: every event type and its fields, defined once (torch-free).

The engine builds events with :func:`build` and every reader (dashboard reducer, report,
headless printer, resume scan) takes them through :func:`validate`, so a field is added or
renamed here and nowhere else. Each payload is a ``TypedDict`` whose annotations are also the
validation rules:

- ``Req[...]`` marks a field every event of that type must carry; the others may be absent,
  and :func:`validate` fills them in as ``None`` so readers index them (``ev["val_acc"]``)
  instead of guessing with ``.get``.
- ``Range(lo, hi)`` bounds a number. Every index that sizes an allocation in a reader (a state,
  an epoch, a block, a list length) is bounded, so a crafted log cannot make a viewer allocate
  gigabytes.
- Floats must be finite (the writer turns NaN/inf into ``null``); ints are never bools.

An event that does not fit is *malformed*: readers skip it and count it. Unknown event types
and unknown fields are ignored (a newer writer may add them), see ``docs/events.md``.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Dict, List, Optional, Tuple, TypedDict

from engine.typecheck import (MAX_DEPTH, MAX_LIST, Fields, Malformed, Range,  # noqa: F401
                              Req, check_fields, compile_fields)

SCHEMA_VERSION = 1

# Bounds on what a reader may allocate per index (far above any real run).
MAX_STATES = 10_000
MAX_EPOCHS = 100_000
MAX_BATCHES = 1_000_000_000
MAX_BLOCKS = 4_096
MAX_RANKS = 65_536
MAX_GPUS = 1_024


State = Annotated[int, Range(0, MAX_STATES - 1)]
Epoch = Annotated[int, Range(0, MAX_EPOCHS - 1)]
BatchIndex = Annotated[int, Range(0, MAX_BATCHES - 1)]
Count = Annotated[int, Range(0, 2 ** 62)]
States = Annotated[int, Range(1, MAX_STATES)]
Epochs = Annotated[int, Range(1, MAX_EPOCHS)]
Percent = Annotated[float, Range(0.0, 100.0)]
Seconds = Annotated[float, Range(0.0, 1e12)]
Time = Annotated[float, Range(0.0, 1e11)]
Seq = Annotated[int, Range(0, 2 ** 62)]
NonNegative = Annotated[float, Range(0.0, math.inf)]
Ratio = Annotated[float, Range(0.0, 1.0)]
Block = Annotated[int, Range(0, MAX_BLOCKS - 1)]
Free = Dict[str, Any]  # free-form JSON object (bounded depth), e.g. the resolved config


# ----------------------------------------------------------------------------- payloads
class Envelope(TypedDict, total=False):
    """Fields on every event."""

    v: Req(int)
    event: Req(str)
    time: Req(Time)
    seq: Req(Seq)


class Layer(TypedDict, total=False):
    """One transformer block's row of a ``pruned``/``hard_cut`` event."""

    block: Req(Block)
    attn_sparsity: Req(Percent)
    heads_kept: Req(Count)
    heads_total: Req(Count)
    mlp_sparsity: Req(Percent)
    neurons_kept: Req(Count)
    neurons_total: Req(Count)


class ModelInfo(TypedDict, total=False):
    name: str
    params: Count
    prunable_weights: Count
    blocks: Annotated[int, Range(0, MAX_BLOCKS)]
    heads_per_block: Annotated[List[Count], Range(0, MAX_BLOCKS)]
    neurons_per_block: Annotated[List[Count], Range(0, MAX_BLOCKS)]
    head_dims: Annotated[List[Count], Range(0, MAX_BLOCKS)]  # per block
    weights_source: str
    img_size: Count


class DataInfo(TypedDict, total=False):
    dataset: str
    train: Count
    val: Count
    test: Count
    num_classes: Count
    img_size: Count


class Squeezing(TypedDict, total=False):
    regularized: Req(Count)
    heads: Req(Count)
    neurons: Req(Count)


RatioList = Annotated[List[Ratio], Range(0, MAX_STATES)]


class RunStarted(TypedDict, total=False):
    run_id: str
    name: str
    config: Free
    model: ModelInfo
    data: DataInfo
    device: str
    pid: Count
    host: str
    states: States
    epochs: Epochs
    method: str
    sorting: str
    criterion: str
    head_ratio: RatioList
    mlp_ratio: RatioList
    batches_per_epoch: Annotated[int, Range(0, MAX_BATCHES)]
    versions: Dict[str, str]
    # distributed runs (torchrun): every rank trains, rank 0 writes
    world_size: Annotated[int, Range(1, MAX_RANKS)]
    backend: str
    hosts: Annotated[List[str], Range(0, MAX_RANKS)]
    per_rank_batch: Count


class Resumed(TypedDict, total=False):
    from_state: State
    from_epoch: Epoch
    from_batch: BatchIndex
    pid: Count
    device: str
    checkpoint: str


class StateStarted(TypedDict, total=False):
    state: Req(State)
    method: str
    epochs: Epochs
    sparsity: Percent
    rewound_to: str
    squeezing: Squeezing


class EpochStarted(TypedDict, total=False):
    state: Req(State)
    epoch: Req(Epoch)
    batches: Annotated[int, Range(0, MAX_BATCHES)]
    lr: NonNegative


class BatchProgress(TypedDict, total=False):
    state: Req(State)
    epoch: Req(Epoch)
    batch: Req(BatchIndex)
    batches: Annotated[int, Range(0, MAX_BATCHES)]
    loss: float
    acc: Percent
    lr: NonNegative
    images_per_s: NonNegative


class LambdaUpdate(TypedDict, total=False):
    state: Req(State)
    step: Count
    steps: Count
    value: NonNegative
    regularized: Count
    heads: Count
    neurons: Count


class EpochEnded(TypedDict, total=False):
    state: Req(State)
    epoch: Req(Epoch)
    train_loss: float
    train_acc: Percent
    val_loss: float
    val_acc: Percent
    test_loss: float
    test_acc: Percent
    seconds: Seconds
    images_per_s: NonNegative
    lr: NonNegative
    # "lambda" is a Python keyword: declared through EXTRA_FIELDS below
    best: bool


class Structure(TypedDict, total=False):
    """The sparsity of a structured mask (shared by ``pruned`` and ``hard_cut``)."""

    state: Req(State)
    sparsity: Percent
    zeros: Count
    total: Count
    heads_kept: Count
    heads_total: Count
    neurons_kept: Count
    neurons_total: Count
    layers: Annotated[List[Layer], Range(0, MAX_BLOCKS)]


class Pruned(Structure, total=False):
    step: Req(State)
    method: str
    sorting: str
    criterion: str
    applied: bool
    rate: Ratio
    head_ratio: Ratio
    mlp_ratio: Ratio
    elementwise_sparsity: Percent
    seconds: Seconds


class HardCut(Structure, total=False):
    val_acc_before: Percent
    val_acc_after: Percent
    residual_norm: NonNegative


class StateEnded(TypedDict, total=False):
    state: Req(State)
    best_val_acc: Percent
    best_epoch: Epoch
    final_val_acc: Percent
    test_acc: Percent
    sparsity: Percent
    seconds: Seconds


class Checkpoint(TypedDict, total=False):
    state: State
    epoch: Epoch
    batch: BatchIndex
    kind: str
    path: str


class Warning_(TypedDict, total=False):
    message: Req(str)
    state: State
    epoch: Epoch
    batch: BatchIndex


class Error(Warning_, total=False):
    traceback: str


class GpuSample(TypedDict, total=False):
    """One GPU as NVML (or, without it, torch) sees it."""

    index: Req(Count)
    name: str
    util: Percent            # utilisation over the last sample period
    mem_used: Count          # bytes
    mem_total: Count
    power_w: NonNegative
    temp_c: Annotated[float, Range(-100.0, 300.0)]


class ProcessSample(TypedDict, total=False):
    """One process of the run (a rank, in a distributed run)."""

    rank: Count
    host: str
    rss: Count               # bytes
    cpu_percent: NonNegative  # of one core: 2 busy cores read 200
    cuda_max_allocated: Count  # bytes, torch.cuda.max_memory_allocated
    gpus: Annotated[List[GpuSample], Range(0, MAX_GPUS)]


class SystemSample(ProcessSample, total=False):
    """``system``: the machine and the run's pace, about every ``run.system_seconds`` and at
    each epoch end. The top-level process fields are this (rank-0) process's."""

    state: State
    epoch: Epoch
    interval: Seconds         # seconds the rates below cover
    host_mem_used: Count
    host_mem_total: Count
    data_wait: Ratio          # share of step time spent waiting for the next batch
    images_per_s: NonNegative  # all ranks together, over the interval
    unavailable: str          # what could not be measured, and why (e.g. no nvidia-ml-py)
    ranks: Annotated[List[ProcessSample], Range(0, MAX_RANKS)]  # the other ranks


class Heartbeat(TypedDict, total=False):
    """Written when nothing else was for a while (a long evaluation or checkpoint), so a
    viewer on another host can tell a quiet engine from a lost one."""

    state: State
    phase: str


class RunEnded(TypedDict, total=False):
    status: Req(str)
    best_val_acc: Percent
    final_val_acc: Percent
    test_acc: Percent
    sparsity: Percent
    seconds: Seconds
    message: str
    stopped_by: str  # who asked to stop: a signal, or a stop request (host, pid)


# event type -> payload; the order is the order of docs/events.md
PAYLOADS: Dict[str, type] = {
    "run_started": RunStarted,
    "resumed": Resumed,
    "state_started": StateStarted,
    "epoch_started": EpochStarted,
    "batch": BatchProgress,
    "lambda": LambdaUpdate,
    "epoch_ended": EpochEnded,
    "pruned": Pruned,
    "hard_cut": HardCut,
    "state_ended": StateEnded,
    "checkpoint": Checkpoint,
    "warning": Warning_,
    "error": Error,
    "system": SystemSample,
    "heartbeat": Heartbeat,
    "run_ended": RunEnded,
}
EXTRA_FIELDS: Dict[str, Dict[str, Any]] = {"epoch_ended": {"lambda": NonNegative}}

EVENT_TYPES: Tuple[str, ...] = tuple(PAYLOADS)
RUN_END_STATUSES = ("completed", "stopped", "failed")
# Events that summarise finished work: stored in a checkpoint before they are logged, and
# written by a resume when the log lacks them (each appears exactly once); value: the fields
# that identify one.
DURABLE: Dict[str, Tuple[str, ...]] = {
    "epoch_ended": ("state", "epoch"), "hard_cut": ("state",), "state_ended": ("state",),
    "pruned": ("state",), "state_started": ("state",)}


_ENVELOPE = compile_fields(Envelope)
FIELDS: Dict[str, Fields] = {
    kind: compile_fields(payload, EXTRA_FIELDS.get(kind)) for kind, payload in PAYLOADS.items()}
FIELD_NAMES: Dict[str, frozenset] = {
    kind: frozenset(name for name, _, _ in fields) for kind, fields in FIELDS.items()}


def validate(obj: Any) -> Optional[dict]:
    """The event ``obj`` ready for a reader, or None for an event type this schema does not
    know (a reader ignores it). Raises :class:`Malformed` naming the field that does not fit.

    The event is checked in place and its absent optional fields are set to None, so
    ``ev[field]`` works for every field of its type; unknown fields are left alone.
    """
    if obj.__class__ is not dict:
        raise Malformed("not a JSON object")
    bad = check_fields(_ENVELOPE, obj, fill=False)
    if bad is not None:
        raise Malformed(f"field {bad!r} is missing or has the wrong type")
    fields = FIELDS.get(obj["event"])
    if fields is None:
        return None
    bad = check_fields(fields, obj, fill=True)
    if bad is not None:
        raise Malformed(f"{obj['event']}: field {bad!r} is missing, out of range or has the "
                        f"wrong type")
    return obj


def build(event: str, fields: Dict[str, Any]) -> Dict[str, Any]:
    """The payload of a new ``event`` (the writer's side). Unknown event types and field names
    are programming errors and raise ``KeyError``; values are not checked here (the writer
    turns non-finite floats into null, and the tests validate every real log)."""
    names = FIELD_NAMES[event]
    unknown = [k for k in fields if k not in names]
    if unknown:
        raise KeyError(f"event {event!r} has no field(s) {unknown}; declare them in "
                       f"engine/schema.py")
    return fields


def line_prefix(event: str) -> str:
    """How the writer's compact JSON line of ``event`` begins: readers recognise frequent
    events by it without parsing the line (see ``engine.logread``)."""
    return '{"v":%d,"event":"%s",' % (SCHEMA_VERSION, event)


def durable_key(ev: Dict[str, Any]) -> tuple:
    """What identifies a summary event (``DURABLE``): e.g. ("epoch_ended", state, epoch)."""
    return (ev["event"],) + tuple(ev.get(k) for k in DURABLE[ev["event"]])
