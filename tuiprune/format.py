"""Turning values into text, once for every output: the dashboard, the headless printer, the
report, export and error messages (torch-free, no Textual).

Every formatter takes anything and returns text: ``None``, NaN, inf, a bool or a value of the
wrong type come back as :data:`NO_VALUE`, so a formatter can never raise on what a log held.

:func:`printable` is the one boundary between data and a terminal: every string that came from
a log, a config, a file name or an exception goes through it before it is shown.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any, Optional, Sequence

NO_VALUE = "--"

# C0 controls except \t and \n, DEL, C1 controls, lone surrogates (not encodable), and the
# Unicode bidirectional overrides/isolates that can reorder what a reader sees.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")


def _escape(match: "re.Match[str]") -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: Any, newlines: bool = True) -> str:
    """``text`` (anything; ``str()`` of it) with every control character made visible as an
    escape (``ESC`` → ``\\x1b``): no terminal escape sequence (title, clipboard, screen clear,
    hyperlinks) can pass. ``newlines=False`` also escapes newline and tab (one-line fields)."""
    text = text if isinstance(text, str) else str(text)
    text = _UNSAFE.sub(_escape, text)
    if not newlines:
        text = text.replace("\n", "\\n").replace("\t", "\\t")
    return text


def printable_tree(value: Any) -> Any:
    """A copy of a JSON-like ``value`` (dicts, lists, scalars) with every string in it, keys
    included, passed through :func:`printable`: for output paths that show many fields of an
    event (the headless printer). Recursion follows the value, so pass only validated events
    (``engine.schema`` bounds their depth)."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(k): printable_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [printable_tree(v) for v in value]
    return value


def finite(value: Any) -> Optional[float]:
    """``value`` as a float when it is a finite real number (not a bool), else None."""
    if value.__class__ is bool or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def pct(value: Any, digits: int = 2) -> str:
    """``12.34%`` for a percentage (0–100)."""
    v = finite(value)
    return NO_VALUE if v is None else f"{v:.{digits}f}%"


def number(value: Any, digits: int = 2) -> str:
    """``12.34``: a fixed-point number (table cells whose header carries the unit)."""
    v = finite(value)
    return NO_VALUE if v is None else f"{v:.{digits}f}"


def count(value: Any) -> str:
    """``1,234`` for a whole number."""
    v = finite(value)
    return NO_VALUE if v is None else f"{int(v):,}"


def plural(n: Any, noun: str) -> str:
    """``1 warning``, ``3 warnings`` (``n`` as by :func:`count`; plural by an added "s")."""
    shown = count(n)
    return f"{shown} {noun}" if shown == "1" else f"{shown} {noun}s"


def ratio(kept: Any, total: Any) -> str:
    """``3/4``."""
    return f"{count(kept)}/{count(total)}"


def signed(value: Any, digits: int = 2) -> str:
    """``+1.25`` / ``-0.50``: a difference, always with its sign."""
    v = finite(value)
    return NO_VALUE if v is None else f"{v:+.{digits}f}"


def fraction_pct(value: Any) -> str:
    """A fraction (0–1) as a whole percentage: ``0.3`` → ``30%``."""
    v = finite(value)
    return NO_VALUE if v is None else f"{v * 100:g}%"


def share(value: Any, digits: int = 0) -> str:
    """A share (0–1) as a rounded percentage: ``0.357`` → ``36%``."""
    v = finite(value)
    return NO_VALUE if v is None else pct(v * 100, digits)


def ratios(values: Any) -> str:
    """Per-step fractions: ``30%`` when every step uses the same, else ``30/20/10%``."""
    if not isinstance(values, (list, tuple)):
        values = [values]
    shown = [f"{v * 100:g}" for v in (finite(x) for x in values) if v is not None]
    if not shown:
        return NO_VALUE
    return (shown[0] if len(set(shown)) == 1 else "/".join(shown)) + "%"


def sci(value: Any) -> str:
    """A float in at most ~8 characters: ``0.84``, ``1.2e-05``."""
    v = finite(value)
    if v is None:
        return NO_VALUE
    if v == 0 or 1e-3 <= abs(v) < 1e4:
        return f"{v:.4g}"
    return f"{v:.2e}"


def duration(seconds: Any) -> str:
    """``0:01:05``; ``2d 01:02:03`` past a day."""
    v = finite(seconds)
    if v is None or v < 0:
        return NO_VALUE
    s = int(min(v, 1e12))
    days, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{days}d {h:02d}:{m:02d}:{s:02d}" if days else f"{h}:{m:02d}:{s:02d}"


def span(seconds: Any) -> str:
    """A short age: ``45s``, ``1m 15s``, ``12m``, ``2h 05m``, ``3d 4h``."""
    v = finite(seconds)
    if v is None or v < 0:
        return NO_VALUE
    s = int(min(v, 1e12))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 10:
        return f"{m}m {s:02d}s"
    if m < 60:
        return f"{m}m"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h {m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d {h}h"


_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def _unit(size: float) -> int:
    """The index in :data:`_UNITS` that shows ``size`` bytes as 1 to 1023.9."""
    k = 0
    while size >= 1024 and k < len(_UNITS) - 1:
        size /= 1024
        k += 1
    return k


def _in_unit(size: float, k: int) -> str:
    v = size / 1024 ** k
    return f"{v:.0f}" if k == 0 or v >= 100 else f"{v:.1f}"


def size(value: Any) -> str:
    """Bytes in binary units: ``512 B``, ``3.2 GiB``, ``80.0 GiB``, ``120 GiB``."""
    v = finite(value)
    if v is None or v < 0:
        return NO_VALUE
    k = _unit(v)
    return f"{_in_unit(v, k)} {_UNITS[k]}"


def size_of(used: Any, total: Any) -> str:
    """``20.0/80.0 GiB``: a part and its whole in the whole's unit (``--`` for an unknown
    part; just the part when the whole is unknown)."""
    u, t = finite(used), finite(total)
    if t is None or t < 0:
        return size(used)
    k = _unit(t)
    part = NO_VALUE if u is None or u < 0 else _in_unit(u, k)
    return f"{part}/{_in_unit(t, k)} {_UNITS[k]}"


def when(timestamp: Any) -> str:
    """``2026-11-29 19:15:16`` (local time)."""
    v = finite(timestamp)
    if v is None or not 0 <= v < 1e11:
        return NO_VALUE
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v))


def clock(timestamp: Any) -> str:
    """``19:15:16`` (local time)."""
    v = finite(timestamp)
    if v is None or not 0 <= v < 1e11:
        return "--:--:--"
    return time.strftime("%H:%M:%S", time.localtime(v))


def bar(fraction: Any, cells: int, full: str = "█", empty: str = "░",
        partials: Sequence[str] = ()) -> str:
    """``fraction`` (0–1) of ``cells`` filled with ``full``, the rest ``empty``; ``partials``
    (eighths, e.g. ``▏▎▍▌▋▊▉``) draw the fractional cell. Unknown: all ``empty``."""
    cells = max(0, int(cells))
    v = finite(fraction)
    if v is None:
        return empty * cells
    eighths = round(max(0.0, min(1.0, v)) * cells * 8)
    whole, rest = divmod(eighths, 8)
    if whole >= cells:
        return full * cells
    if rest and len(partials) >= 7:
        return full * whole + partials[rest - 1] + empty * (cells - whole - 1)
    whole = round(max(0.0, min(1.0, v)) * cells)
    return full * whole + empty * (cells - whole)
