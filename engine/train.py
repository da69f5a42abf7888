"""Optimizer, learning-rate schedule, mixed precision and evaluation for the run loop."""

from __future__ import annotations

import contextlib
import math
from typing import Optional, Tuple

import torch
from torch import nn


def make_optimizer(model: nn.Module, t: dict) -> torch.optim.Optimizer:
    """SGD or AdamW; no weight decay on 1-d parameters (norms, biases) and on the parameters
    timm lists in ``no_weight_decay()`` (position embedding, class token)."""
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name in skip else decay).append(p)
    groups = [{"params": decay, "weight_decay": t["weight_decay"]},
              {"params": no_decay, "weight_decay": 0.0}]
    if t["optimizer"] == "adamw":
        return torch.optim.AdamW(groups, lr=t["lr"])
    return torch.optim.SGD(groups, lr=t["lr"], momentum=t["momentum"],
                           nesterov=t["momentum"] > 0)


def lr_at(t: dict, step: int, steps_per_epoch: int) -> float:
    """Learning rate at optimizer step ``step`` of a state: linear warm-up, then the schedule.
    Computed on the host (no scheduler object to save, no device sync)."""
    total = t["epochs"] * steps_per_epoch
    warmup = int(round(t["warmup_epochs"] * steps_per_epoch))
    if step < warmup:
        return t["lr"] * (step + 1) / warmup
    if t["schedule"] == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return t["lr"] * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    if t["schedule"] == "step":
        return t["lr"] * t["gamma"] ** ((step // steps_per_epoch) // t["step_epochs"])
    return t["lr"]


def accumulator_dtype(device: torch.device) -> torch.dtype:
    """float64 for running sums, except on MPS, which has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


def amp_dtype(amp, device: torch.device) -> Tuple[Optional[torch.dtype], Optional[str]]:
    """The autocast dtype for ``train.amp`` on ``device`` and a warning when it cannot apply."""
    if amp is False:
        return None, None
    if device.type != "cuda":
        return None, f"train.amp = {amp!r} ignored on {device.type}: mixed precision is CUDA-only"
    if amp == "fp16":
        return torch.float16, None
    if amp == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16, None
    return torch.float16, None


def autocast(device: torch.device, dtype: Optional[torch.dtype]):
    return (torch.autocast(device.type, dtype=dtype) if dtype is not None
            else contextlib.nullcontext())


@torch.no_grad()
def evaluate(model: nn.Module, source, device: torch.device,
             dtype: Optional[torch.dtype]) -> Tuple[float, float]:
    """Mean loss and accuracy (percent) over a whole split, in eval mode; one sync at the end."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=accumulator_dtype(device))
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for x, y in source.batches():
        with autocast(device, dtype):
            logits = model(x)
        loss_sum += nn.functional.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
    model.train(was_training)
    if seen == 0:
        return float("nan"), float("nan")
    return float(loss_sum) / seen, 100.0 * int(correct) / seen


def calibration_batches(source, n: int):
    """The first ``n`` batches of ``source`` (un-augmented training data)."""
    out = []
    for i, batch in enumerate(source.batches()):
        if i >= n:
            break
        out.append(batch)
    return out
