"""Elapsed time and ETA of a run and of its current epoch, from the view model."""

from __future__ import annotations

from typing import Optional, Tuple

from tuiprune.dashboard.viewmodel import RUNNING, RunView


def clock(view: RunView, now: Optional[float]) -> Optional[float]:
    """The time the screen speaks of: ``now`` while the run goes on live, else the time of
    the last event (a finished run, or a replay)."""
    if now is not None and view.status == RUNNING:
        return max(now, view.last_time or now)
    return view.last_time


def elapsed(view: RunView, now: Optional[float] = None) -> Optional[float]:
    at = clock(view, now)
    if view.started_at is None or at is None:
        return None
    return max(0.0, at - view.started_at)


def _planned_epochs(view: RunView) -> Optional[int]:
    if not view.states or any(not isinstance(st.epochs, int) for st in view.states):
        return None
    return sum(st.epochs for st in view.states)


def epoch_fraction(view: RunView) -> float:
    """How much of the current epoch is done (0..1)."""
    p = view.progress
    if p.batch is None or not p.batches:
        return 0.0
    return min(1.0, (p.batch + 1) / p.batches)


def epoch_eta(view: RunView) -> Optional[float]:
    """Seconds left in the current epoch, from its pace so far."""
    p = view.progress
    if p.batch is None or not p.batches or p.started_at is None or p.last_time is None:
        return None
    done = p.batch + 1
    spent = p.last_time - p.started_at
    if spent <= 0 or done <= 0:
        return None
    return max(0.0, spent / done * (p.batches - done))


def run_eta(view: RunView) -> Optional[float]:
    """Seconds left in the run: epochs to go times the mean epoch time so far."""
    if view.status != RUNNING:
        return None
    planned = _planned_epochs(view)
    if not planned:
        return None
    finished = [pt.seconds for st in view.states for pt in st.points.values() if pt.seconds]
    current = epoch_fraction(view)
    p = view.progress
    spent = sum(finished)
    if p.started_at is not None and p.last_time is not None and current > 0:
        spent += p.last_time - p.started_at
    done = len(finished) + current
    if done <= 0 or spent <= 0:
        return None
    return max(0.0, spent / done * (planned - done))


def overall_fraction(view: RunView) -> Tuple[int, Optional[int]]:
    """Epochs done and epochs planned."""
    return sum(st.epochs_done for st in view.states), _planned_epochs(view)
