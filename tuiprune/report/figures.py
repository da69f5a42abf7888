"""The report's figures: PNG images drawn with matplotlib (Agg, no display) from the folded
logs of one or more runs.

- Size: every figure is :data:`FIG_W` × :data:`FIG_H` inches at :data:`DPI` (1000 × 600 px;
  the two-panel system figure is :data:`FIG_H_TALL` high, 1000 × 800 px). At a paper
  column's 3.5 in the 10 pt text prints at 7 pt; on a 1280 × 720 slide it shows unscaled.
- Colour: run ``i`` (in the order given) has :data:`COLOURS` ``[i]`` in every figure
  (Okabe–Ito, safe for colour-blind readers); past 7 runs colours repeat with other markers.
- A figure with nothing to show is not drawn; its :class:`Figure` carries the reason.

matplotlib is a dependency; if it cannot be imported anyway, :func:`unavailable` says how
to install it and the report is written without figures.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence

from engine.runlog import RunLog
from tuiprune.palette import RUN_COLOURS

FIG_W, FIG_H, FIG_H_TALL, DPI = 5.0, 3.0, 4.0, 200
COLOURS = RUN_COLOURS
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
INSTALL = "pip install matplotlib"
STYLE = {"font.size": 10, "axes.titlesize": 10, "axes.labelsize": 9, "xtick.labelsize": 8,
         "ytick.labelsize": 8, "legend.fontsize": 7.5, "axes.grid": True, "grid.alpha": 0.3,
         "axes.spines.top": False, "axes.spines.right": False, "savefig.facecolor": "white",
         "figure.facecolor": "white", "lines.linewidth": 1.4, "lines.markersize": 3.5}


@dataclass
class Run:
    """One run as the figures see it: a label, its folded log and its place in the list
    (which gives its colour and marker)."""

    label: str
    log: RunLog
    index: int

    @property
    def colour(self) -> str:
        return COLOURS[self.index % len(COLOURS)]

    @property
    def marker(self) -> str:
        return MARKERS[(self.index // len(COLOURS) + self.index) % len(MARKERS)]


@dataclass
class Figure:
    """A drawn figure (``png``), or why it was not drawn (``note``)."""

    key: str       # file name stem, e.g. "accuracy"
    title: str
    caption: str = ""
    png: Optional[bytes] = None
    note: str = ""

    def filename(self, prefix: str = "") -> str:
        return f"{prefix}{self.key}.png"


def unavailable() -> Optional[str]:
    """None when matplotlib can draw, else a line saying how to install it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return f"figures not drawn: matplotlib is not installed ({INSTALL})"
    return None


def new_figure(tall: bool = False, **subplots: Any):
    """A figure of the standard size and its axes (``plt.subplots`` arguments)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(FIG_W, FIG_H_TALL if tall else FIG_H), dpi=DPI,
                    layout="constrained")
    return fig, fig.subplots(**subplots)


def png_bytes(fig) -> bytes:
    """The figure as PNG at :data:`DPI`, exactly its nominal size in pixels."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def draw_all(runs: Sequence[Run]) -> List[Figure]:
    """Every figure of the report on ``runs`` (drawn, or with the reason it is not)."""
    import matplotlib

    from tuiprune.report import plots

    out: List[Figure] = []
    with matplotlib.rc_context(STYLE):
        builders: List[Callable[[Sequence[Run]], List[Figure]]] = [
            plots.accuracy, plots.accuracy_vs_sparsity, plots.sparsity_maps,
            plots.lambda_figure, plots.system]
        for build in builders:
            out += build(runs)
    return out


def runs_of(logs: Sequence[tuple]) -> List[Run]:
    """``(label, RunLog)`` pairs as :class:`Run` s, in order."""
    return [Run(label, log, i) for i, (label, log) in enumerate(logs)]
