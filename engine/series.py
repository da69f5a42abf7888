"""Bounded series of a long event log (torch-free): what a reader keeps of the frequent events
(``lambda``, ``system``) so that its memory does not grow with the length of the run.

:class:`BoundedSeries` keeps at most ``capacity`` evenly spaced points however many are
added; :class:`SystemTrace` folds ``system`` events into one such series of the figures the
viewers plot (images/s, GPU utilisation, data wait, CPU, memory).
"""

from __future__ import annotations

from typing import Any, Iterable, List, NamedTuple, Optional, Tuple

SERIES_POINTS = 512  # points a reader keeps of one series (figures are ~1000 px wide)

Point = Tuple[float, Any]


class BoundedSeries:
    """Down-samples by halving: when full, every other kept point goes and only every
    ``stride``-th new point is kept from then on. Memory is O(capacity); ``last`` and ``count``
    stay exact. ``y`` may be any value (a number, or a tuple of figures)."""

    __slots__ = ("capacity", "stride", "count", "points", "last")

    def __init__(self, capacity: int = 256) -> None:
        if capacity < 2 or capacity % 2:
            raise ValueError("capacity must be an even number >= 2")
        self.capacity = capacity
        self.stride = 1
        self.count = 0
        self.points: List[Point] = []
        self.last: Optional[Point] = None

    def add(self, x: float, y: Any) -> None:
        self.last = (x, y)
        if self.count % self.stride == 0:
            points = self.points
            points.append(self.last)
            if len(points) >= self.capacity:
                del points[1::2]
                self.stride *= 2
        self.count += 1

    def clear(self) -> None:
        self.stride = 1
        self.count = 0
        self.points = []
        self.last = None

    def snapshot(self) -> List[Point]:
        """The kept points, with the latest point appended when it was not kept."""
        if self.last is not None and (not self.points or self.points[-1] is not self.last):
            return self.points + [self.last]
        return list(self.points)

    def __len__(self) -> int:
        return len(self.points)


class SystemPoint(NamedTuple):
    """The plotted figures of one ``system`` event (None where the event lacks them)."""

    images_per_s: Optional[float]
    data_wait: Optional[float]     # share 0-1
    gpu_util: Optional[float]      # percent, mean over the run's GPUs (every rank's)
    gpu_mem_used: Optional[int]    # bytes, summed over the run's GPUs
    gpu_mem_total: Optional[int]
    cpu_percent: Optional[float]  # summed over the run's processes
    rss: Optional[int]


def known_sum(values: Iterable[Optional[float]]) -> Optional[float]:
    """The sum of the values that are known; None when none is."""
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def system_point(ev: dict) -> SystemPoint:
    """A validated ``system`` event's plotted figures for the whole run: every process (rank
    0's own figures and ``ranks``), GPU utilisation averaged over all their GPUs, memory,
    CPU and RSS summed."""
    processes = [ev, *(ev["ranks"] or [])]
    gpus = [g for p in processes for g in (p.get("gpus") or ())]
    utils = [g["util"] for g in gpus if g.get("util") is not None]
    return SystemPoint(ev["images_per_s"], ev["data_wait"],
                       sum(utils) / len(utils) if utils else None,
                       known_sum(g.get("mem_used") for g in gpus),
                       known_sum(g.get("mem_total") for g in gpus),
                       known_sum(p.get("cpu_percent") for p in processes),
                       known_sum(p.get("rss") for p in processes))


class SystemTrace:
    """Every ``system`` event of a log, as a bounded time series (x: the event's ``time``,
    y: its :class:`SystemPoint`), plus the last event whole and the reasons why figures were
    unavailable."""

    def __init__(self, capacity: int = SERIES_POINTS) -> None:
        self.series = BoundedSeries(capacity)
        self.last: Optional[dict] = None
        self.unavailable: Optional[str] = None  # the last event's reason, if any

    @property
    def count(self) -> int:
        return self.series.count

    def add(self, ev: dict) -> None:
        self.series.add(ev["time"], system_point(ev))
        self.last = ev
        if ev["unavailable"]:
            self.unavailable = ev["unavailable"]
