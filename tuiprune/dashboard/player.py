"""Replay: a worker thread that hands a recorded log's events on with their original pacing.

Gaps between events are scaled by ``1/speed``; one gap never takes more than
``MAX_GAP_S`` of wall time, so a run resumed the next day (or a log whose clock jumps back and
forth) does not replay a day of silence. ``speed == 0`` means as fast as possible (also what
``End`` switches to). The log is read through ``engine.logread`` (validated events, malformed
lines counted); like :class:`tuiprune.tail.Tailer`, any exception ends the thread and goes to
``on_error``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Optional

from engine.logread import MAX_CHUNK_EVENTS, MAX_PROBLEMS, Chunk, iter_chunks
from tuiprune.tail import Deliver, OnError, ReaderThread

SPEEDS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
MAX_GAP_S = 5.0


class Player(ReaderThread):
    """Reads ``path`` once and calls ``deliver(chunk)`` from its own thread."""

    def __init__(self, path: Path, deliver: Deliver, on_error: OnError, speed: float = 10.0,
                 max_events: int = MAX_CHUNK_EVENTS) -> None:
        super().__init__("tuiprune-replay", path, deliver, on_error, max_events)
        self.speed = speed
        self.paused = False
        self.parked = threading.Event()  # set while the thread waits for "un-pause"
        self.caught_up = False
        self._stopped = False
        self._cond = threading.Condition()

    # ---- control, from any thread
    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def toggle_pause(self) -> None:
        with self._cond:
            self.paused = not self.paused
            self._cond.notify_all()

    def change_speed(self, steps: int) -> None:
        """Move ``steps`` along :data:`SPEEDS` (no effect while jumping to the end)."""
        with self._cond:
            if self.speed > 0:
                i = min(range(len(SPEEDS)), key=lambda k: abs(SPEEDS[k] - self.speed))
                self.speed = SPEEDS[min(len(SPEEDS) - 1, max(0, i + steps))]
                self._cond.notify_all()

    def jump_to_end(self) -> None:
        with self._cond:
            self.speed = 0.0
            self.paused = False
            self._cond.notify_all()

    def stopped(self) -> bool:
        return self._stopped

    # ---- the thread
    def read(self) -> None:
        pending = Chunk()
        prev_t: Optional[float] = None
        shown_at = time.monotonic()
        for chunk in iter_chunks(self.path, self.max_events, skip=lambda: self.speed == 0):
            pending.malformed += chunk.malformed
            pending.problems = (pending.problems + chunk.problems)[:MAX_PROBLEMS]
            pending.torn |= chunk.torn
            if self.speed == 0:
                pending.events.extend(chunk.events)
            else:
                for ev in chunk.events:
                    t = ev["time"]
                    if prev_t is not None and t > prev_t and self.speed > 0:
                        pending = self._hand_on(pending)
                        shown_at = self._wait(shown_at, t - prev_t)
                    prev_t = t
                    pending.events.append(ev)
                    if len(pending.events) >= self.max_events:
                        pending = self._hand_on(pending)
            if len(pending.events) >= self.max_events:
                pending = self._hand_on(pending)
            if self._stopped:
                return
        self.caught_up = True
        pending.caught_up = True
        self._hand_on(pending, always=True)

    def _hand_on(self, chunk: Chunk, always: bool = False) -> Chunk:
        """Deliver ``chunk`` (unless it is empty), waiting while paused; a fresh one back."""
        if not (always or chunk.events or chunk.malformed or chunk.torn):
            return chunk
        with self._cond:
            while self.paused and not self._stopped:
                self.parked.set()
                self._cond.wait()
            self.parked.clear()
        if not self._stopped:
            self.deliver(chunk)
        return Chunk()

    def _wait(self, since: float, log_gap: float) -> float:
        """Sleep until ``log_gap`` seconds of the log have passed since ``since`` (wall clock,
        at the current speed); return when the next event counts as shown."""
        with self._cond:
            while not self._stopped:
                if self.paused:
                    self.parked.set()
                    self._cond.wait()
                    self.parked.clear()
                    since = time.monotonic()
                    continue
                if self.speed == 0:
                    return time.monotonic()
                due = since + min(log_gap / self.speed, MAX_GAP_S)
                left = due - time.monotonic()
                if left <= 0:
                    return due
                self._cond.wait(left)
        return time.monotonic()
