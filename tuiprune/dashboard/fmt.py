"""Number and time formatting shared by the widgets."""

from __future__ import annotations

from typing import Optional, Sequence


def duration(seconds: Optional[float]) -> str:
    """``1:02:03``; ``2d 01:02:03`` past a day; ``--:--`` when unknown."""
    if seconds is None:
        return "--:--"
    s = int(seconds)
    days, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    text = f"{h}:{m:02d}:{s:02d}"
    return f"{days}d {h:02d}:{m:02d}:{s:02d}" if days else text


def pct(value: Optional[float], digits: int = 1) -> str:
    return "--" if value is None else f"{value:.{digits}f}%"


def count(value: Optional[int]) -> str:
    return "?" if value is None else f"{value:,}"


def ratio(kept: Optional[int], total: Optional[int]) -> str:
    return f"{count(kept)}/{count(total)}"


def ratios(values: Sequence[float]) -> str:
    """``30%`` when every pruning step uses the same ratio, else ``30/20/10%``."""
    if not values:
        return "?"
    shown = [f"{v * 100:g}" if v <= 1 else f"{v:g}" for v in values]
    if len(set(shown)) == 1:
        return shown[0] + "%"
    return "/".join(shown) + "%"


def compact(value: Optional[float]) -> str:
    """A float in at most ~8 characters: ``0.84``, ``1.2e-05``."""
    if value is None:
        return "--"
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.4g}"
    return f"{value:.2e}"
