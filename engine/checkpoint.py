"""Checkpoint files of a run (``RUN_DIR/checkpoints/``): their one layout, the one commit path,
and rebuilding a model from one.

Every checkpoint is a ``torch.save``d dict, loadable with ``weights_only=True``::

    {"format": 1, "kind": "latest" | "stop" | "best" | "init" | "rewind",
     "model": state_dict,        # dense keys (no weight_orig); pruned weights exactly 0
     "masks": {layer: bool tensor} | None,   # the hard masks in force
     "model_spec": {"name": timm name, "kwargs": create_model kwargs},
     "state": int, "epoch": int, "val_acc": float | None,
     # latest/stop only: the rest of RunState (position, optimizer, RSST target and ramp,
     # the state's progress, the epoch's tally so far, RNG, events to write exactly once)
     ...}

Writes are atomic: a temporary file is fsynced, then renamed over the old one, so a kill at
any moment leaves the previous checkpoint; a failed write removes its temporary file. A model
whose weights are not all finite is never written (:func:`commit`).
"""

from __future__ import annotations

import os
import pickle
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch import nn

from engine.errors import UserError, WriteFailed

FORMAT = 1


@dataclass
class StateProgress:
    """The state in progress: its best epoch so far and its training time."""

    best_val_acc: float = -1.0
    best_epoch: int = -1
    best_test_acc: Optional[float] = None
    last_val_acc: Optional[float] = None
    seconds: float = 0.0


@dataclass
class EpochTally:
    """Sums over the batches of the epoch in progress trained so far (host numbers)."""

    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0

    def plus(self, loss_sum: float, correct: int, seen: int, seconds: float) -> "EpochTally":
        return EpochTally(self.loss_sum + loss_sum, self.correct + correct, self.seen + seen,
                          self.seconds + seconds)


@dataclass
class RunState:
    """Everything a resume needs besides the model: where the run is (``state``, ``epoch``,
    and the next ``batch``), the state's progress, the epoch's tally, the optimizer and RSST
    state, the pending RSST target, the warnings already given, the RNG, and the summary
    events to write exactly once."""

    state: int = 0
    epoch: int = 0
    batch: int = 0
    progress: StateProgress = field(default_factory=StateProgress)
    tally: EpochTally = field(default_factory=EpochTally)
    optimizer: Optional[dict] = None
    target: Optional[Dict[str, torch.Tensor]] = None
    rsst: Optional[dict] = None
    warned: List[str] = field(default_factory=list)
    rng: Optional[dict] = None
    pending_events: List[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in ("state", "epoch", "batch", "optimizer", "target",
                                             "rsst", "warned", "rng", "pending_events")}
        out.update(progress=asdict(self.progress), tally=asdict(self.tally))
        return out

    @classmethod
    def from_checkpoint(cls, ck: dict) -> "RunState":
        return cls(state=ck["state"], epoch=ck["epoch"], batch=ck.get("batch", 0),
                   progress=StateProgress(**ck["progress"]), tally=EpochTally(**ck["tally"]),
                   optimizer=ck.get("optimizer"), target=ck.get("target") or None,
                   rsst=ck.get("rsst"), warned=list(ck.get("warned", [])), rng=ck.get("rng"),
                   pending_events=list(ck.get("pending_events", [])))


def layout(kind: str, model_state: dict, masks: Optional[dict], spec: dict, state: int,
           epoch: int, val_acc: Optional[float] = None,
           run_state: Optional[RunState] = None) -> dict:
    """The one checkpoint layout, for every kind."""
    ck = {"format": FORMAT, "kind": kind, "model": model_state, "masks": masks,
          "model_spec": spec, "state": state, "epoch": epoch, "val_acc": val_acc}
    if run_state is not None:
        ck.update(run_state.to_dict())
    return ck


def nonfinite(tensors: Dict[str, torch.Tensor]) -> List[str]:
    """Names of the floating-point tensors holding NaN or inf (one device sync in all)."""
    names = [k for k, t in tensors.items() if t.is_floating_point() and t.numel()]
    if not names:
        return []
    ok = torch.stack([torch.isfinite(tensors[k]).all() for k in names]).cpu()
    return [k for k, good in zip(names, ok.tolist()) if not good]


class NonFiniteWeights(Exception):
    """The model's weights are not all finite: nothing was written."""


def commit(ck: dict, path: Path) -> None:
    """Write checkpoint ``ck`` atomically, unless its model holds NaN or inf (then raise
    :class:`NonFiniteWeights` and leave the previous file in place): a diverged model never
    replaces a good checkpoint."""
    bad = nonfinite(ck["model"])
    if bad:
        raise NonFiniteWeights(f"{len(bad)} weight tensor(s) hold NaN/inf (first: {bad[0]})")
    save_atomic(ck, path)


class _RecordingFile:
    """A file whose write errors are kept: torch.save reports them as an opaque RuntimeError."""

    def __init__(self, f) -> None:
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.f.flush()


def save_atomic(obj: dict, path: Path) -> None:
    """``torch.save`` to a temporary file, fsync, rename into place. On any failure the
    temporary file is removed; an OS failure (disk full) becomes :class:`WriteFailed`."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    out = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            out = _RecordingFile(f)
            torch.save(obj, out)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise WriteFailed(path, exc) from None
        if out is not None and out.error is not None:
            raise WriteFailed(path, out.error) from None
        raise


def load_weights(path: Path, what: str = "checkpoint"):
    """``torch.load`` a file of tensors safely (``weights_only``, onto the CPU), or raise a
    one-line UserError: a file that holds pickled code is refused, never executed."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower():
            raise UserError(f"{what} {path} holds pickled code, not just weights; tuiprune "
                            f"refuses to run it (load only files you trust, and re-save them "
                            f"as plain state dicts or .safetensors)") from None
        raise UserError(f"cannot read {what} {path} as weights: not a torch file, or "
                        f"corrupted") from None
    except Exception as exc:  # corrupt, truncated or foreign file
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise UserError(f"cannot read {what} {path} as weights: not a torch file, or "
                        f"corrupted ({type(exc).__name__}: {first})") from None


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint safely (``weights_only``) onto the CPU, or raise a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    ckpt = load_weights(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise UserError(f"{path} is not a tuiprune checkpoint (no 'model' entry)")
    return ckpt


def build_model(model_spec: dict) -> nn.Module:
    """A fresh (random-init) timm model from a checkpoint's ``model_spec``."""
    import timm

    return timm.create_model(model_spec["name"], pretrained=False, **model_spec["kwargs"])


def load_model(path: Path) -> "tuple[nn.Module, Optional[dict], dict]":
    """Rebuild the model of a checkpoint with its weights and masks applied.

    Returns ``(model, masks, checkpoint)``; the model is in eval mode on the CPU."""
    from engine.pruning import apply_masks

    ckpt = load_checkpoint(path)
    model = build_model(ckpt["model_spec"])
    model.load_state_dict(ckpt["model"])
    masks = ckpt.get("masks")
    if masks:
        apply_masks(model, masks)
    return model.eval(), masks, ckpt
