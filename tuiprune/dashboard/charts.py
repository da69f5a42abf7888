"""Text charts: line charts, sparklines and bars, as Rich ``Text`` lines.

Why not textual-plotext: plotext draws axes, frames and legends with hard-coded Unicode
box-drawing characters (``plotext/_build.py``), so it cannot honour ``--ascii``; it also
builds a whole figure in Python on every redraw. These few functions draw exactly what the
dashboard needs, in braille dots or plain ASCII marks (:mod:`tuiprune.dashboard.glyphs`), and
their output is plain text that tests can read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from rich.text import Text

from tuiprune import format as fmt
from tuiprune.dashboard.glyphs import Glyphs

Point = Tuple[float, float]
_BRAILLE_BITS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))


@dataclass
class Line:
    points: Sequence[Point]
    style: str
    mark: str  # the ASCII mark of this line


def _span(values: List[float], given: Optional[Tuple[float, float]]) -> Tuple[float, float]:
    lo, hi = given if given else (min(values), max(values))
    if hi - lo < 1e-12:
        pad = max(1.0, abs(lo) * 1e-9, abs(hi) * 1e-9)  # 1 for any sane value
        lo, hi = lo - pad, hi + pad
    return lo, hi


def _scale(v: float, lo: float, hi: float, dots: int) -> Optional[int]:
    """Where ``v`` falls on ``dots + 1`` positions from ``lo`` to ``hi`` (clamped); None when
    it cannot be placed (differences of huge values overflow)."""
    f = (v - lo) / (hi - lo) if hi != lo else 0.0
    if f != f:  # NaN: inf / inf
        return None
    return round(min(max(f, 0.0), 1.0) * dots)


def _raster(lines: Sequence[Line], cols: int, rows: int, sub: Tuple[int, int],
            xr: Tuple[float, float], yr: Tuple[float, float]) -> List[Dict[Tuple[int, int], int]]:
    """Per line: {(cell col, cell row): braille bits (or 1)} of its segments."""
    sx, sy = sub
    dots_x, dots_y = cols * sx - 1, rows * sy - 1
    (x0, x1), (y0, y1) = xr, yr
    grids = []
    for line in lines:
        grid: Dict[Tuple[int, int], int] = {}
        prev = None
        for x, y in line.points:
            dx = None if x is None else _scale(x, x0, x1, dots_x)
            dy = None if y is None else _scale(y, y1, y0, dots_y)  # row 0 at the top
            if dx is None or dy is None:
                prev = None
                continue
            steps = max(abs(dx - prev[0]), abs(dy - prev[1])) if prev else 0
            for i in range(steps + 1):
                px = dx if not steps else round(prev[0] + (dx - prev[0]) * i / steps)
                py = dy if not steps else round(prev[1] + (dy - prev[1]) * i / steps)
                bit = _BRAILLE_BITS[py % 4][px % 2] if sx == 2 else 1
                key = (px // sx, py // sy)
                grid[key] = grid.get(key, 0) | bit
            prev = (dx, dy)
        grids.append(grid)
    return grids


def _whole(v: float) -> str:
    """An axis label: ``91``; huge or tiny magnitudes in scientific notation."""
    return f"{v:.0f}" if abs(v) < 1e6 else fmt.sci(v)


def line_chart(lines: Sequence[Line], width: int, height: int, g: Glyphs, *,
               y_range: Optional[Tuple[float, float]] = None,
               x_range: Optional[Tuple[float, float]] = None,
               steps: Sequence[float] = (), x_labels: Sequence[Tuple[float, str]] = (),
               y_format: Optional[Callable[[float], str]] = None) -> List[Text]:
    """``height`` lines of ``width`` cells: a y axis with labels, the lines, dim vertical
    marks at the x positions in ``steps`` and, when given, a row of x labels."""
    xs = [p[0] for line in lines for p in line.points if p[1] is not None]
    ys = [p[1] for line in lines for p in line.points if p[1] is not None]
    if not xs or width < 8 or height < 2:
        return [Text("no data yet", style="dim")]
    xr, yr = _span(xs, x_range), _span(ys, y_range)
    y_format = y_format or _whole
    labels = {0: y_format(yr[1]), height - 1 - bool(x_labels): y_format(yr[0])}
    rows = height - bool(x_labels)
    if rows >= 5:
        labels[(rows - 1) // 2] = y_format((yr[0] + yr[1]) / 2)
    gutter = max(len(s) for s in labels.values()) + 1
    cols = width - gutter
    if cols < 4:
        return [Text("no room for the chart", style="dim")]
    sub = (2, 4) if g.braille else (1, 1)
    cells: Dict[Tuple[int, int], Tuple[str, str]] = {}  # a later line draws over an earlier
    for line, grid in zip(lines, _raster(lines, cols, rows, sub, xr, yr)):
        for key, bits in grid.items():
            cells[key] = (chr(0x2800 + bits) if g.braille else line.mark, line.style)
    step_cols = {(_scale(x, xr[0], xr[1], cols * sub[0] - 1) or 0) // sub[0] for x in steps}
    blank = (" ", "")
    out = []
    for r in range(rows):
        text = Text(no_wrap=True, overflow="crop")
        label = labels.get(r)
        text.append((label.rjust(gutter - 1) + g.y_tick) if label is not None
                    else " " * (gutter - 1) + g.y_axis, style="dim")
        run: List[str] = []
        run_style = ""
        for c in range(cols):
            char, style = cells.get((c, r), blank)
            if char == " " and c in step_cols:
                char, style = g.step_mark, "dim"
            if style != run_style and run:
                text.append("".join(run), style=run_style)
                run = []
            run_style = style
            run.append(char)
        text.append("".join(run), style=run_style)
        out.append(text)
    if x_labels:
        axis = [" "] * cols
        for x, label in x_labels:
            c = _scale(x, xr[0], xr[1], cols - 1)
            if c is not None and len(label) <= cols:
                c = min(c, cols - len(label))  # a label at the right edge ends there
            if c is not None and c + len(label) <= cols and all(ch == " " for ch in axis[c:c + len(label)]):
                axis[c:c + len(label)] = list(label)
        out.append(Text(" " * (gutter - 1) + g.corner + "".join(axis), style="dim",
                        no_wrap=True, overflow="crop"))
    return out


def sparkline(values: Sequence[float], width: int, g: Glyphs,
              span: Optional[Tuple[float, float]] = None) -> str:
    """The last values as one row of level glyphs; more values than cells are averaged.
    ``span``: the values of the lowest and highest glyph (default: their min and max)."""
    if not values or width <= 0:
        return ""
    if len(values) > width:
        n = len(values)
        values = [sum(values[i * n // width:(i + 1) * n // width])
                  / max(1, (i + 1) * n // width - i * n // width) for i in range(width)]
    top = len(g.spark) - 1
    if span is not None:
        lo, hi = span
        return "".join(g.spark[round(min(max((v - lo) / (hi - lo), 0.0), 1.0) * top)]
                       for v in values)
    lo, hi = min(values), max(values)
    scale = 1.0 if math.isfinite(hi - lo) else 0.5  # keep differences finite (±1e308)
    spread = (hi - lo) if scale == 1.0 else hi * scale - lo * scale
    if spread <= 1e-12 * max(1.0, abs(lo)):
        return g.spark[top // 2] * len(values)
    return "".join(g.spark[round((v * scale - lo * scale) / spread * top)] for v in values)


def bar(fraction: Optional[float], width: int, g: Glyphs, style: str = "") -> Text:
    """A bar ``width`` cells long filled to ``fraction`` (0..1), eighths where Unicode allows."""
    text = Text(no_wrap=True)
    if width <= 0:
        return text
    f = 0.0 if fraction is None else min(1.0, max(0.0, fraction))
    eighths = round(f * width * 8)
    full, part = divmod(eighths, 8)
    partial = g.bar_partials[part - 1] if part else ""
    text.append(g.bar_full * full + partial, style=style)
    text.append(g.bar_empty * (width - full - (1 if partial else 0)), style="dim")
    return text


def segmented_bar(filled: int, total: int, width: int, g: Glyphs, style: str = "") -> Text:
    """``total`` equal segments (heads) of which ``filled`` are drawn full."""
    filled = max(0, min(filled, total))
    if total <= 0 or width < total:
        return bar(filled / total if total > 0 else 0.0, width, g, style)
    cell = width // total
    text = Text(no_wrap=True)
    text.append(g.bar_full * (cell * filled), style=style)
    text.append(g.bar_empty * (cell * (total - filled)), style="dim")
    text.append(" " * (width - cell * total))
    return text
