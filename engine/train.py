"""Optimizer, learning-rate schedule, mixed precision, compilation and evaluation for the run
loop, and the CUDA settings that make them fast (TF32 matmuls, fused optimizer steps)."""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Optional, Tuple

import torch
from torch import nn


def configure_backends(device: torch.device, t: dict) -> None:
    """Process-wide speed settings for training on ``device``: on CUDA with ``train.tf32``,
    float32 matmuls and convolutions run on TF32 tensor cores (Ampere and later; a 10-bit
    mantissa for the products, float32 accumulation). Nothing changes on other devices."""
    if device.type == "cuda" and t.get("tf32", True):
        torch.set_float32_matmul_precision("high")
        torch.backends.cudnn.allow_tf32 = True


def optimizer_options(t: dict, device_type: str) -> dict:
    """Keyword arguments for the optimizer's implementation: with ``train.fused`` on CUDA, the
    fused kernels (one launch updates every parameter); elsewhere torch's default."""
    return {"fused": True} if t.get("fused", True) and device_type == "cuda" else {}


def make_optimizer(model: nn.Module, t: dict,
                   device_type: Optional[str] = None) -> torch.optim.Optimizer:
    """SGD (Nesterov when there is momentum) or AdamW over timm's weight-decay groups: no
    decay on 1-d parameters (norms, biases) nor on those the model lists in
    ``no_weight_decay()`` (position embedding, class token). Fused on CUDA (see
    :func:`optimizer_options`; ``device_type`` defaults to the parameters')."""
    from timm.optim import param_groups_weight_decay

    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else ()
    groups = param_groups_weight_decay(model, t["weight_decay"], no_weight_decay_list=skip)
    options = optimizer_options(t, device_type or next(model.parameters()).device.type)
    if t["optimizer"] == "adamw":
        return torch.optim.AdamW(groups, lr=t["lr"], **options)
    return torch.optim.SGD(groups, lr=t["lr"], momentum=t["momentum"],
                           nesterov=t["momentum"] > 0, **options)


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


def amp_dtype(amp, device: torch.device,
              bf16_supported: Optional[Callable[[], bool]] = None
              ) -> Tuple[Optional[torch.dtype], Optional[str]]:
    """The autocast dtype for ``train.amp`` on ``device`` and a warning when it cannot apply.

    ``"auto"`` (the default): bf16 on a CUDA device that supports it, otherwise none (full
    float32, no warning). ``True``: bf16 where supported, else fp16 with loss scaling.
    ``bf16_supported`` defaults to ``torch.cuda.is_bf16_supported``."""
    if amp is False:
        return None, None
    supported = bf16_supported or torch.cuda.is_bf16_supported
    if amp == "auto":
        return (torch.bfloat16 if device.type == "cuda" and supported() else None), None
    if device.type != "cuda":
        return None, f"train.amp = {amp!r} ignored on {device.type}: mixed precision is CUDA-only"
    if amp == "fp16":
        return torch.float16, None
    if amp == "bf16" or supported():
        return torch.bfloat16, None
    return torch.float16, None


def autocast(device: torch.device, dtype: Optional[torch.dtype]):
    return (torch.autocast(device.type, dtype=dtype) if dtype is not None
            else contextlib.nullcontext())


@torch.inference_mode()
def evaluate(model: nn.Module, source, device: torch.device,
             dtype: Optional[torch.dtype]) -> Tuple[float, float]:
    """Mean loss and accuracy (percent) over a whole split, in eval mode under
    ``torch.inference_mode`` (no autograd bookkeeping), in the batches of ``source``
    (``data.eval_batch_size``); one sync at the end. ``model`` may be a compiled module."""
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


def compile_model(model: nn.Module) -> nn.Module:
    """``torch.compile`` of ``model`` (``train.compile``): a wrapper that shares its parameters,
    buffers and masks. Shapes are static, so each batch size (a short last batch, the
    evaluation batch) compiles once, into a graph specialised for it.

    Pruning masks stay exact: what keeps pruned weights at zero — the gradient hook on each
    masked weight and the optimizer step-post hook (``engine.pruning.apply_masks``) — runs
    outside the compiled graph, and new masks change no graph, so a new pruning step needs no
    recompilation. Compiling again (a new wrapper for each state) reuses the compiled code."""
    return torch.compile(model, dynamic=False)


class Trainer:
    """One optimizer step at a time: forward under autocast, loss, backward (fp16 loss
    scaling), the RSST squeeze, gradient clipping, the step. Never syncs with the device.

    ``model`` may be wrapped in ``DistributedDataParallel``. With ``train.compile`` the
    forward pass (and its backward) runs compiled: ``forward`` is the module a step calls,
    ``eval_forward`` the one :meth:`evaluate` calls (the model itself, compiled, never the
    distributed wrapper)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, t: dict,
                 device: torch.device, amp: Optional[torch.dtype], reg=None) -> None:
        from torch.nn.parallel import DistributedDataParallel

        self.model, self.optimizer, self.t = model, optimizer, t
        self.device, self.amp, self.reg = device, amp, reg
        self.scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
        plain = model.module if isinstance(model, DistributedDataParallel) else model
        compiled = t.get("compile", False)
        self.forward = compile_model(model) if compiled else model
        self.eval_forward = compile_model(plain) if compiled else plain

    def evaluate(self, source) -> Tuple[float, float]:
        """:func:`evaluate` of the model (compiled when training is) over ``source``."""
        return evaluate(self.eval_forward, source, self.device, self.amp)

    def step(self, x: torch.Tensor, y: torch.Tensor,
             lr: float) -> Tuple[torch.Tensor, torch.Tensor]:
        """Train on one batch at learning rate ``lr``; returns the detached loss and the
        number of correct predictions (device tensors)."""
        opt = self.optimizer
        for g in opt.param_groups:
            g["lr"] = lr
        with autocast(self.device, self.amp):
            logits = self.forward(x)
            loss = nn.functional.cross_entropy(logits, y,
                                               label_smoothing=self.t["label_smoothing"])
        opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(opt)
        else:
            loss.backward()
        if self.reg is not None:
            self.reg.step()
        if self.t["grad_clip"] > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.t["grad_clip"])
        if self.scaler is not None:
            self.scaler.step(opt)
            self.scaler.update()
        else:
            opt.step()
        return loss.detach(), (logits.argmax(1) == y).sum()
