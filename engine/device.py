"""Which torch device a run uses (``run.device``)."""

from __future__ import annotations

import os

import torch

from engine.errors import UserError


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA, else MPS, else CPU; otherwise the named device, checked to exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"run.device = {name!r} but CUDA is not available here (torch "
                        f"{torch.__version__}); use device = 'cpu' or 'auto'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(f"run.device = {name!r} but only {torch.cuda.device_count()} CUDA "
                        f"device(s) are visible (CUDA_VISIBLE_DEVICES="
                        f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})")
    return dev
