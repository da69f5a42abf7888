"""How a run is asked to stop: SIGINT/SIGTERM, a stop request file left from another host, and
a second interrupt that must wait for a checkpoint write to finish (torch-free).

The run loop reads :attr:`StopControl.requested` at batch boundaries; nothing here interrupts
training in the middle of a step, except during set-up, where there is nothing to save and a
signal raises :class:`StopRequested` at once.
"""

from __future__ import annotations

import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from engine.pidfile import read_stop_request

POLL_SECONDS = 1.0


class StopRequested(Exception):
    """SIGINT/SIGTERM or a stop request arrived; the loop checkpointed and unwinds."""


class StopControl:
    """The stop state of one run. ``by`` says who asked (a signal, or a stop request and its
    host and pid); ``note`` is a warning the run logs once, at its next event."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.setup = True  # until the run has something to save
        self.poll_files = False  # set by the process that watches the run directory
        self.by = ""
        self.note: Optional[str] = None
        self._requested = False
        self._next_poll = 0.0
        self._critical = 0
        self._abort_pending = False
        self._old: dict = {}

    def install(self) -> None:
        self._old = {s: signal.signal(s, self._on_signal)
                     for s in (signal.SIGINT, signal.SIGTERM)}

    def restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}

    @property
    def requested(self) -> bool:
        """Whether to stop: a signal arrived, or a stop request file appeared (looked for
        about once a second)."""
        if not self._requested and self.poll_files and time.monotonic() >= self._next_poll:
            self._next_poll = time.monotonic() + POLL_SECONDS
            who = read_stop_request(self.run_dir)
            if who:
                self.request(who)
        return self._requested

    def request(self, who: str) -> None:
        """Stop at the next batch boundary (after a checkpoint), because of ``who``."""
        if not self._requested:
            self._requested, self.by = True, who
            self.note = f"{who}: finishing the current batch, then checkpointing and stopping"

    def take_note(self) -> Optional[str]:
        note, self.note = self.note, None
        return note

    def _on_signal(self, signum, _frame) -> None:
        name = signal.Signals(signum).name
        if self.setup:  # nothing to save yet: stop at once
            self.by = self.by or name
            raise StopRequested
        if self._requested:  # a second signal: stop now, but never inside a commit
            if self._critical:
                self._abort_pending = True
                return
            raise KeyboardInterrupt
        self.request(f"{name} received")

    @contextmanager
    def critical(self):
        """A second interrupt waits until the block has finished (a checkpoint write)."""
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1
            if not self._critical and self._abort_pending:
                self._abort_pending = False
                raise KeyboardInterrupt
