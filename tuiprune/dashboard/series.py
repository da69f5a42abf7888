"""A series that keeps at most ``capacity`` evenly spaced points, however many are added."""

from __future__ import annotations

from typing import List, Optional, Tuple

Point = Tuple[float, float]


class BoundedSeries:
    """Down-samples by halving: when full, every other kept point goes and only every
    ``stride``-th new point is kept from then on. Memory is O(capacity); ``last`` and ``count``
    stay exact."""

    __slots__ = ("capacity", "stride", "count", "points", "last")

    def __init__(self, capacity: int = 256) -> None:
        if capacity < 2 or capacity % 2:
            raise ValueError("capacity must be an even number >= 2")
        self.capacity = capacity
        self.stride = 1
        self.count = 0
        self.points: List[Point] = []
        self.last: Optional[Point] = None

    def add(self, x: float, y: float) -> None:
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
