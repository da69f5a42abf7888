"""The training loops the benchmarks time (bench_gpu.py, bench_runs.py), each behind the same
two calls: ``before_slot()`` (untimed) and ``steps(k)`` (train ``k`` batches; returns the
images seen).

- :class:`PlainLoop` — the plainest PyTorch loop over the same on-device batches.
- :class:`EngineLoop` — the engine's own pieces: ``engine.train.Trainer`` stepping,
  ``engine.epoch.EpochLoop`` driving (throttled events and host syncs, the loss watch, the
  data-wait clock) for a small host object, masks from ``engine.pruning.apply_masks`` and, in
  an RSST state, ``engine.rsst.RSSTRegularizer``.
- :class:`ResearchLoop` — the research code's loop in its style, written from a description
  of it (not from its code): CIFAR as CPU uint8 arrays decoded by a DataLoader with 2 workers
  and torchvision PIL transforms (random crop with padding 4, flip, ``ToTensor``), batches
  copied with ``.to(device)`` without ``non_blocking``, ``torch.nn.utils.prune``
  reparametrisation (``weight_orig × weight_mask`` at every forward), ``loss.item()`` and a
  top-1 ``.item()`` every step, in RSST states a Python loop over all modules adding
  ``reg * w`` to gradients, a ``print`` every ``print_freq`` steps, SGD with momentum, fp32
  matmuls in full precision (no TF32, PyTorch's default).
"""

from __future__ import annotations

import copy
import io
import math
from contextlib import contextmanager
from typing import Dict, Iterator, Optional

import torch
from torch import nn
from torch.nn import functional as F

from engine.data import Preprocess, TensorSource
from engine.epoch import EpochLoop, QuietHost
from engine.events import EventLog
from engine.model import normalization
from engine.pruning import Masks, apply_masks
from engine.rsst import RSSTRegularizer
from engine.train import Trainer, compile_model, make_optimizer, optimizer_options
from engine.transitions import prune_step

CIFAR_MEAN_STD = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def state_masks(model: nn.Module) -> tuple:
    """(masks in force, RSST target): a first 30 %/30 % pruning step (global, magnitude) and
    the second step's target, both scored on ``model``'s weights."""
    first = prune_step(model, rate=0.3, head_ratio=0.3, mlp_ratio=0.3)
    probe = copy.deepcopy(model)
    apply_masks(probe, first.m_s)
    second = prune_step(probe, rate=0.3, head_ratio=0.3, mlp_ratio=0.3)
    return first.m_s, second.m_s


def device_source(images: torch.Tensor, labels: torch.Tensor, model: nn.Module, batch: int,
                  train: bool = True) -> TensorSource:
    """The engine's on-device source (augmented when training) over whole batches only."""
    n = len(labels) // batch * batch
    mean, std = normalization(model)
    pre = Preprocess(images.shape[-1], mean, std, images.device)
    return TensorSource(images[:n], labels[:n], batch, train=train, augment=train,
                        preprocess=pre)


@contextmanager
def full_fp32():
    """float32 matmuls in full precision (PyTorch's default; no TF32) for the block."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def endless(source) -> Iterator:
    epoch = 0
    while True:
        yield from source.batches(seed=epoch)
        epoch += 1


class PlainLoop:
    """Forward, cross-entropy, zero_grad, backward, SGD step; nothing else."""

    def __init__(self, model: nn.Module, source, t: dict, device: torch.device,
                 amp: Optional[torch.dtype], compiled: bool) -> None:
        self.forward = compile_model(model) if compiled else model
        self.device, self.amp, self.batch_size = device, amp, source.batch_size
        self.opt = torch.optim.SGD(model.parameters(), lr=t["lr"], momentum=t["momentum"],
                                   nesterov=True, weight_decay=t["weight_decay"],
                                   **optimizer_options(t, device.type))
        self.batches = endless(source)
        model.train()

    def before_slot(self) -> None:
        pass

    def steps(self, k: int) -> int:
        for _ in range(k):
            x, y = next(self.batches)
            with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
                loss = F.cross_entropy(self.forward(x), y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        return k * self.batch_size


class BenchHost(QuietHost):
    """What EpochLoop asks of a run: events go to ``log`` (or nowhere), no checkpoints."""

    def __init__(self, log: Optional[EventLog], reg: Optional[RSSTRegularizer]) -> None:
        self.log, self.reg = log, reg

    def emit(self, event: str, **fields) -> dict:
        return self.log.emit(event, **fields) if self.log is not None else {}

    def report_lambda(self, lr: float) -> None:
        reg = self.reg
        self.emit("lambda", state=1, step=reg.steps_taken, steps=reg.ramp_steps,
                  value=reg.value, regularized=reg.regularized, heads=reg.heads,
                  neurons=reg.neurons)


class EngineLoop:
    """The engine's training loop in a Refill state (``target`` None: masks in force) or an
    RSST state (masks in force and ``target`` squeezed). Each slot is the tail of one epoch
    (``k`` batches), so per-epoch work (the shuffle) counts once per slot. With ``log`` the
    throttled ``batch``/``lambda`` events are written (at most one host sync per 0.1 s);
    without, the loop syncs once per slot."""

    def __init__(self, model: nn.Module, source, t: dict, device: torch.device,
                 amp: Optional[torch.dtype], masks: Masks, target: Optional[Masks],
                 log: Optional[EventLog]) -> None:
        apply_masks(model, masks)
        reg = (RSSTRegularizer(model, target, reg_granularity=1.0, ramp_steps=100_000)
               if target is not None else None)
        self.trainer = Trainer(model, make_optimizer(model, t), t, device, amp, reg)
        self.loop = EpochLoop(self.trainer, source, t, BenchHost(log, reg),
                              report_seconds=0.1 if log is not None else math.inf)
        self.source, self.epoch = source, 0
        model.train()

    def before_slot(self) -> None:
        pass

    def steps(self, k: int) -> int:
        start = max(0, len(self.source) - k)
        self.loop.run(1, self.epoch, start, seed=self.epoch)
        self.epoch += 1
        return self.loop.take_pace().images


class CifarArrays(torch.utils.data.Dataset):
    """CIFAR as torchvision serves it: HWC uint8 numpy arrays, a PIL image per item."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform) -> None:
        self.images = images.permute(0, 2, 3, 1).contiguous().numpy()
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


class ResearchLoop:
    """The research code's loop in its style (fp32), in an RSST state when ``target`` is set.

    Between slots its 2 workers keep decoding; ``before_slot`` trains on the batches they
    prefetched meanwhile (untimed), so a timed slot sees the loader's steady pace."""

    PRINT_FREQ = 100

    def __init__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                 batch: int, device: torch.device, masks: Masks,
                 target: Optional[Masks], workers: int = 2) -> None:
        from torch.nn.utils import prune
        from torchvision import transforms

        for name, mask in masks.items():  # weight_orig × weight_mask at every forward
            prune.custom_from_mask(model.get_submodule(name), "weight", mask != 0)
        self.doomed: Dict[str, torch.Tensor] = {
            name: ((masks[name] != 0) & (t == 0)).float() for name, t in (target or {}).items()}
        self.model, self.device, self.batch = model.train(), device, batch
        self.reg, self.step_no, self.out = 1e-4, 0, io.StringIO()
        self.opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9,
                                   weight_decay=1e-4)
        tf = transforms.Compose([transforms.RandomCrop(32, padding=4),
                                 transforms.RandomHorizontalFlip(), transforms.ToTensor()])
        self.prefetched = workers * 2  # DataLoader's prefetch_factor 2 per worker
        self.loader = torch.utils.data.DataLoader(
            CifarArrays(images.cpu(), labels.cpu(), tf), batch_size=batch, shuffle=True,
            num_workers=workers, pin_memory=device.type == "cuda", drop_last=True,
            persistent_workers=workers > 0)
        self.batches = self._endless()
        self.eval_tf = transforms.ToTensor()

    def _endless(self) -> Iterator:
        while True:
            yield from self.loader

    def before_slot(self) -> None:
        self._train(self.prefetched)

    def steps(self, k: int) -> int:
        self._train(k)
        return k * self.batch

    def _train(self, k: int) -> None:
        with full_fp32():  # as the research code ran: PyTorch's default, no TF32
            self._train_steps(k)

    def _train_steps(self, k: int) -> None:
        for _ in range(k):
            x, y = next(self.batches)
            x, y = x.to(self.device), y.to(self.device)  # `.cuda()`: no non_blocking
            out = self.model(x)
            loss = F.cross_entropy(out, y)
            self.opt.zero_grad()
            loss.backward()
            for name, module in self.model.named_modules():  # the RSST squeeze, per module
                if name in self.doomed:
                    module.weight_orig.grad.add_(
                        self.reg * module.weight_orig.data * self.doomed[name])
            self.opt.step()
            loss_value = loss.item()
            top1 = (out.argmax(1) == y).float().mean().item() * 100
            self.step_no += 1
            if self.step_no % self.PRINT_FREQ == 0:
                print(f"step {self.step_no} loss {loss_value:.4f} top1 {top1:.2f}",
                      file=self.out)

    def evaluate(self, images: torch.Tensor, labels: torch.Tensor) -> int:
        """One pass over ``images`` in the same style (a fresh 2-worker loader, as an epoch's
        evaluation had; a sync per batch); returns the images seen."""
        loader = torch.utils.data.DataLoader(
            CifarArrays(images.cpu(), labels.cpu(), self.eval_tf), batch_size=self.batch,
            num_workers=2, pin_memory=self.device.type == "cuda")
        self.model.eval()
        correct = seen = 0
        with torch.no_grad(), full_fp32():
            for x, y in loader:
                x, y = x.to(self.device), y.to(self.device)
                correct += (self.model(x).argmax(1) == y).sum().item()
                seen += len(y)
        self.model.train()
        return seen
