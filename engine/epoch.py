"""One training epoch of the run loop: steps, throttled progress events, the loss watch and
mid-epoch checkpoints.

The loop keeps its sums on the device and synchronises with the host only when it reports
(at most every 0.1 s, and at the last batch): the loss check, the ``batch``/``lambda`` events
and a mid-epoch checkpoint each need a host value, nothing else does.

The epoch's tally is ``base`` (what earlier processes trained of this epoch, restored from a
checkpoint) plus this process's running sums; a mid-epoch checkpoint stores that total
without folding it into ``base``, so it is counted exactly once however often the run
checkpoints or resumes.

The loop also times how long it waits for the next batch (host clock around the source's
iterator, no device sync): :meth:`EpochLoop.take_pace` hands the figures to the system
sampler, and an epoch that spends more than :data:`DATA_WAIT_WARNING` of its step time waiting
gets one ``warning`` per state (a loader that keeps the device idle).
"""

from __future__ import annotations

import time
from typing import List, NamedTuple, Optional, Protocol

import torch

from engine.checkpoint import EpochTally
from engine.events import Throttle
from engine.stops import StopRequested
from engine.train import Trainer, accumulator_dtype, lr_at


DATA_WAIT_WARNING = 0.3  # share of an epoch's step time spent waiting for batches


class Pace(NamedTuple):
    """Training done since the last :meth:`EpochLoop.take_pace`: ``images``, ``step_seconds``
    (wall time of the steps, the wait for their batches and the throttled reports included;
    mid-epoch checkpoints excluded) and ``data_wait_seconds`` (of that, waiting for batches)."""

    images: int
    step_seconds: float
    data_wait_seconds: float


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

    def system_due(self) -> bool: ...

    def report_system(self, state: int, epoch: int, pace: "Pace") -> None: ...


class QuietHost:
    """An :class:`EpochHost` that keeps nothing (no events, checkpoints or system samples):
    the base for driving :class:`EpochLoop` outside a run (benchmarks, tests)."""

    stop_requested = False

    def emit(self, event: str, **fields) -> dict:
        return {}

    def report_lambda(self, lr: float) -> None:
        pass

    def save_mid_epoch(self, batch: int, tally: EpochTally) -> None:
        pass

    def system_due(self) -> bool:
        return False

    def report_system(self, state: int, epoch: int, pace: "Pace") -> None:
        pass


class Alone:
    """The decisions of a run in one process: taken every step, by this process alone."""

    every, world, main = 1, 1, True

    @staticmethod
    def agree(flags: List[bool]) -> List[bool]:
        return flags


class EpochLoop:
    """Trains epochs of ``source`` with ``trainer`` for ``host``.

    ``images``, ``step_seconds`` and ``data_wait_seconds`` accumulate until
    :meth:`take_pace` reads and resets them."""

    def __init__(self, trainer: Trainer, source, train_cfg: dict, host: EpochHost,
                 checkpoint_seconds: float = 0.0, report_seconds: float = 0.1,
                 ranks=Alone) -> None:
        """``ranks``: who takes the decisions to stop, checkpoint, report the machine or
        give up on a diverged loss — this process alone (:class:`Alone`), or every rank of a
        distributed run together every ``ranks.every`` steps
        (``engine.distributed.RankAgreement``)."""
        self.trainer, self.source, self.t, self.host = trainer, source, train_cfg, host
        self.ranks = ranks
        self.batches = len(source)
        self.checkpoint_seconds = checkpoint_seconds
        self.report_seconds = report_seconds
        self.next_batch = 0  # where the epoch in progress stands (for error reports)
        self.images = 0
        self.step_seconds = self.data_wait_seconds = 0.0
        self.warned_data_wait = False  # once per state: a loop trains one state

    def take_pace(self) -> Pace:
        """The images, step seconds and data-wait seconds since the last call."""
        pace = Pace(self.images, self.step_seconds, self.data_wait_seconds)
        self.images, self.step_seconds, self.data_wait_seconds = 0, 0.0, 0.0
        return pace

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
        wait = steps = 0.0  # this epoch's data wait and step time

        def tally() -> EpochTally:
            return base.plus(float(loss_sum), int(correct), seen, time.perf_counter() - t0)

        batches = iter(self.source.batches(seed, start))
        b = start
        while True:
            t_fetch = time.perf_counter()
            batch = next(batches, None)
            t_step = time.perf_counter()
            if batch is None:
                break
            x, y = batch
            lr = lr_at(self.t, epoch * nb + b, nb)
            loss, hits = self.trainer.step(x, y, lr)
            loss_sum += loss * len(y)
            correct += hits
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), b, first_bad)
            seen += len(y)
            self.next_batch = b + 1
            last = b == nb - 1
            report = throttle.ready() or last
            stop = due = system = False
            if self.ranks.every == 1 or last or (b + 1 - start) % self.ranks.every == 0:
                stop, due, system = self._decide(first_bad, b, last, report, last_ckpt,
                                                 state, epoch)
            if report and self.ranks.main:  # images/s from host numbers: no tally() syncs
                self._report(state, epoch, b, loss, hits, len(y), lr, base.seen + seen,
                             base.seconds + time.perf_counter() - t0)
            fetched, took = t_step - t_fetch, time.perf_counter() - t_fetch
            wait, steps = wait + fetched, steps + took
            self.images += len(y)
            self.step_seconds += took
            self.data_wait_seconds += fetched
            if system:
                self.host.report_system(state, epoch, self.take_pace())
            if stop or due:
                self.host.save_mid_epoch(b + 1, tally())
                last_ckpt = time.perf_counter()
            if stop:
                raise StopRequested
            b += 1
        self._judge_data_wait(wait, steps, state, epoch)
        return tally()

    def _decide(self, first_bad: torch.Tensor, b: int, last: bool, report: bool,
                last_ckpt: float, state: int, epoch: int):
        """Whether to stop, checkpoint and sample the machine after batch ``b`` (on every rank
        alike); raises :class:`NonFiniteLoss` when the loss diverged on any rank. The loss is
        read where the run reports anyway (alone), or where the ranks agree (together):
        never a sync per step."""
        bad = int(first_bad) if report or self.ranks.every > 1 else -1
        stop, due, diverged, system = self.ranks.agree([
            self.host.stop_requested and not last,
            self.checkpoint_seconds > 0 and not last
            and time.perf_counter() - last_ckpt > self.checkpoint_seconds,
            bad >= 0, self.host.system_due() and not last])  # the epoch end samples anyway
        if diverged:
            self._check_loss(bad if bad >= 0 else b, state, epoch)
        return stop, due, system

    def _report(self, state: int, epoch: int, b: int, loss: torch.Tensor, hits: torch.Tensor,
                size: int, lr: float, seen: int, seconds: float) -> None:
        """The throttled ``batch`` (and, RSST, ``lambda``) events: host syncs happen here.
        ``seen`` images of this rank in the epoch so far, in ``seconds``."""
        self.host.emit("batch", state=state, epoch=epoch, batch=b, batches=self.batches,
                       loss=float(loss), acc=100.0 * int(hits) / size, lr=lr,
                       images_per_s=seen * self.ranks.world / max(seconds, 1e-9))
        if self.trainer.reg is not None:
            self.host.report_lambda(lr)

    def _judge_data_wait(self, wait: float, steps: float, state: int, epoch: int) -> None:
        """One ``warning`` per state when this epoch waited for data more than
        :data:`DATA_WAIT_WARNING` of its step time."""
        if self.warned_data_wait or steps <= 0 or wait / steps <= DATA_WAIT_WARNING:
            return
        self.warned_data_wait = True
        self.host.emit("warning", state=state, epoch=epoch, message=(
            f"the data loader kept the device waiting {wait / steps:.0%} of the step time in "
            f"state {state}, epoch {epoch} ({wait:.1f} s of {steps:.1f} s): raise data.workers, "
            f"or use a dataset held on the device (synthetic, cifar10, cifar100)"))

    @staticmethod
    def _check_loss(bad: int, state: int, epoch: int) -> None:
        """Raise :class:`NonFiniteLoss` for a loss first non-finite at batch ``bad``."""
        if bad >= 0:
            raise NonFiniteLoss(f"loss became non-finite (NaN/inf) in state {state}, epoch "
                                f"{epoch}, batch {bad}; the last good checkpoint is kept. Lower "
                                f"train.lr, or check rsst.reg_ceiling / the data", batch=bad)
