"""Checkpoint files of a run (``RUN_DIR/checkpoints/``) and rebuilding a model from one.

Every checkpoint is a ``torch.save``d dict, loadable with ``weights_only=True``::

    {"format": 1, "kind": "latest" | "best" | "stop" | "init",
     "model": state_dict,        # dense keys (no weight_orig); pruned weights exactly 0
     "masks": {layer: bool tensor} | None,   # the hard masks in force
     "model_spec": {"name": timm name, "kwargs": create_model kwargs},
     "state": int, "epoch": int, "val_acc": float | None, ...}

``latest.pt`` adds what resume needs (position, optimizer, RSST target and state, partial-epoch
metrics, RNG state, events to write exactly once). Writes are atomic: a temporary file is
fsynced, then renamed over the old one, so a kill at any moment leaves the previous checkpoint.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from engine.errors import UserError

FORMAT = 1


def save_atomic(obj: dict, path: Path) -> None:
    """``torch.save`` to a temporary file, fsync, rename into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
        raise UserError(f"cannot read {what} {path}: not a torch file, or corrupted") from None
    except Exception as exc:  # corrupt, truncated or foreign file
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise UserError(f"cannot read {what} {path}: {type(exc).__name__}: {first}") from None


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
