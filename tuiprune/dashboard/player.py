"""Replay: a worker thread that hands a recorded log's events on with their original pacing.

Gaps between events are scaled by ``1/speed``; one gap never takes more than
``MAX_GAP_S`` of wall time, so a run resumed the next day does not replay a day of silence.
``speed == 0`` means as fast as possible (also what ``End`` switches to).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, List, Optional

from tuiprune.eventlog import MAX_BATCH_EVENTS, Batch, iter_batches

SPEEDS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
MAX_GAP_S = 5.0


class Player(threading.Thread):
    """Reads ``path`` once and calls ``deliver(batch)`` from its own thread."""

    def __init__(self, path: Path, deliver: Callable[[Batch], None], speed: float = 10.0,
                 max_events: int = MAX_BATCH_EVENTS) -> None:
        super().__init__(name="tuiprune-replay", daemon=True)
        self.path = Path(path)
        self.deliver = deliver
        self.speed = speed
        self.max_events = max_events
        self.paused = False
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

    # ---- the thread
    def run(self) -> None:
        pending: List[dict] = []
        bad = 0
        prev_t: Optional[float] = None
        shown_at = time.monotonic()
        for chunk in iter_batches(self.path, self.max_events, skip=lambda: self.speed == 0):
            bad += chunk.bad_lines
            if self.speed == 0:
                pending.extend(chunk.events)
            else:
                for ev in chunk.events:
                    t = ev.get("time")
                    if isinstance(t, (int, float)):
                        if prev_t is not None and t > prev_t and self.speed > 0:
                            if pending or bad:
                                self._hand_on(pending, bad)
                                pending, bad = [], 0
                            shown_at = self._wait(shown_at, t - prev_t)
                        prev_t = t
                    pending.append(ev)
                    if len(pending) >= self.max_events:
                        self._hand_on(pending, bad)
                        pending, bad = [], 0
            if len(pending) >= self.max_events:
                self._hand_on(pending, bad)
                pending, bad = [], 0
            if self._stopped:
                return
        self.caught_up = True
        self._hand_on(pending, bad, caught_up=True)

    def _hand_on(self, events: List[dict], bad: int, caught_up: bool = False) -> None:
        with self._cond:
            while self.paused and not self._stopped:
                self._cond.wait()
        if not self._stopped:
            self.deliver(Batch(events, bad, caught_up=caught_up))

    def _wait(self, since: float, log_gap: float) -> float:
        """Sleep until ``log_gap`` seconds of the log have passed since ``since`` (wall clock,
        at the current speed); return when the next event counts as shown."""
        with self._cond:
            while not self._stopped:
                if self.paused:
                    self._cond.wait()
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
