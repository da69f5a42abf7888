"""One training epoch of the run loop: steps, throttled progress events, the loss watch and
mid-epoch checkpoints.

The loop keeps its sums on the device and synchronises with the host only when it reports
(at most every 0.1 s, and at the last batch): the loss check, the ``batch``/``lambda`` events
and a mid-epoch checkpoint each need a host value, nothing else does.

The epoch's tally is ``base`` (what earlier processes trained of this epoch, restored from a
checkpoint) plus this process's running sums; a mid-epoch checkpoint stores that total
without folding it into ``base``, so it is counted exactly once however often the run
checkpoints or resumes.
"""

from __future__ import annotations

import time
from typing import Optional, Protocol

import torch

from engine.checkpoint import EpochTally
from engine.events import Throttle
from engine.train import Trainer, accumulator_dtype, lr_at


class StopRequested(Exception):
    """SIGINT/SIGTERM arrived; the loop checkpointed and unwinds."""


class NonFiniteLoss(Exception):
    """The training loss became NaN/inf at ``batch``."""

    def __init__(self, message: str, batch: int) -> None:
        super().__init__(message)
        self.batch = batch


class EpochHost(Protocol):
    """What the loop needs from the run it trains."""

    stop_requested: bool

    def emit(self, event: str, **fields) -> dict: ...

    def report_lambda(self, lr: float) -> None: ...

    def save_mid_epoch(self, batch: int, tally: EpochTally) -> None: ...


class EpochLoop:
    """Trains epochs of ``source`` with ``trainer`` for ``host``."""

    def __init__(self, trainer: Trainer, source, train_cfg: dict, host: EpochHost,
                 checkpoint_seconds: float = 0.0, report_seconds: float = 0.1) -> None:
        self.trainer, self.source, self.t, self.host = trainer, source, train_cfg, host
        self.batches = len(source)
        self.checkpoint_seconds = checkpoint_seconds
        self.report_seconds = report_seconds
        self.next_batch = 0  # where the epoch in progress stands (for error reports)

    def run(self, state: int, epoch: int, start: int, seed: int,
            base: Optional[EpochTally] = None) -> EpochTally:
        """Train batches ``start…`` of epoch ``epoch`` (data order from ``seed``); return the
        epoch's whole tally. Raises :class:`StopRequested` after a mid-epoch checkpoint when
        the host asks to stop, :class:`NonFiniteLoss` when the loss diverges."""
        base = base or EpochTally()
        dev = self.trainer.device
        throttle = Throttle(self.report_seconds)
        loss_sum = torch.zeros((), device=dev, dtype=accumulator_dtype(dev))
        correct = torch.zeros((), device=dev, dtype=torch.long)
        first_bad = torch.full((), -1, device=dev, dtype=torch.long)
        seen, nb = 0, self.batches
        t0 = last_ckpt = time.perf_counter()

        def tally() -> EpochTally:
            return base.plus(float(loss_sum), int(correct), seen, time.perf_counter() - t0)

        for b, (x, y) in enumerate(self.source.batches(seed, start), start=start):
            lr = lr_at(self.t, epoch * nb + b, nb)
            loss, hits = self.trainer.step(x, y, lr)
            loss_sum += loss * len(y)
            correct += hits
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss),
                                    torch.full_like(first_bad, b), first_bad)
            seen += len(y)
            self.next_batch = b + 1
            last = b == nb - 1
            stop = self.host.stop_requested and not last
            due = (self.checkpoint_seconds > 0 and not last
                   and time.perf_counter() - last_ckpt > self.checkpoint_seconds)
            if throttle.ready() or last or stop or due:
                self._check_loss(int(first_bad), state, epoch)
                now = tally()
                self.host.emit("batch", state=state, epoch=epoch, batch=b, batches=nb,
                               loss=float(loss), acc=100.0 * int(hits) / len(y), lr=lr,
                               images_per_s=now.seen / max(now.seconds, 1e-9))
                if self.trainer.reg is not None:
                    self.host.report_lambda(lr)
                if stop or due:
                    self.host.save_mid_epoch(b + 1, now)
                    last_ckpt = time.perf_counter()
                if stop:
                    raise StopRequested
        return tally()

    @staticmethod
    def _check_loss(bad: int, state: int, epoch: int) -> None:
        if bad >= 0:
            raise NonFiniteLoss(f"loss became non-finite (NaN/inf) in state {state}, epoch "
                                f"{epoch}, batch {bad}; the last good checkpoint is kept. Lower "
                                f"train.lr, or check rsst.reg_ceiling / the data", batch=bad)
