"""The dashboard's bounded series: :class:`engine.series.BoundedSeries` (torch-free), one
implementation shared with the report's readers."""

from __future__ import annotations

from engine.series import BoundedSeries, Point

__all__ = ["BoundedSeries", "Point"]
