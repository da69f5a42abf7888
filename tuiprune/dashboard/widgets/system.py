"""System pane (``m``): GPU utilisation and memory as bars with sparklines, the run's CPU, RSS,
data-wait share and images/s, from the log's ``system`` events, and a warning marker while the
GPU is starving (:mod:`tuiprune.dashboard.sysview`).

Shown by itself once the log has a ``system`` event; ``m`` shows or hides it for good. It asks
for a line per GPU (up to :data:`GPU_LINES`; more GPUs share one line of means and sums), one
for the process figures and one for the warning, and makes do with the height it gets (one
line: everything in brief).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, List, Optional, Tuple

from rich.text import Text

from tuiprune import format as fmt
from tuiprune.dashboard import viewmodel as vm
from tuiprune.dashboard.charts import bar, sparkline
from tuiprune.dashboard.glyphs import Glyphs
from engine.series import BoundedSeries
from tuiprune.dashboard.sysview import STARVING_DATA_WAIT, STARVING_GPU_UTIL, SystemView
from tuiprune.dashboard.widgets.base import ViewWidget, clip

GPU_LINES = 4  # GPUs drawn one per line; more share one line
MIN_HEIGHT = 3  # border and one line
SPARK_MAX = 24
BAR_MAX = 10
PERCENT = (0.0, 100.0)
SHARE = (0.0, 1.0)
LOW = "bold yellow"  # a figure past its starving threshold
NO_DATA = "no system data (an older engine, or run.system_seconds = 0)"
NO_DATA_YET = "no system data yet (the engine samples every run.system_seconds; 0 = off)"


def _rate(images_per_s: Optional[float]) -> str:
    return fmt.count(None if images_per_s is None else round(images_per_s))


def recent(series: BoundedSeries, cells: int) -> List[float]:
    """The latest ``cells`` kept points of ``series`` (its recent history)."""
    return [y for _, y in series.snapshot()[-cells:]] if cells > 0 else []


@dataclass
class Item:
    """``label [bar] value [sparkline]`` on a line of figures."""

    label: str
    value: str
    style: str = ""  # of the value
    fraction: Optional[float] = None  # drawn as a bar when given
    series: Optional[BoundedSeries] = None  # drawn as a sparkline when given
    span: Optional[Tuple[float, float]] = None  # the sparkline's scale (default: min-max)
    color: str = "green"  # of the bar and the sparkline
    has_bar: bool = False  # a bar even when the fraction is unknown (drawn empty)


def figures_line(items: List[Item], width: int, g: Glyphs) -> Text:
    """``items`` on one line of ``width`` cells: bars and sparklines share what the labels
    and values leave over (left out when fewer than 3 cells are left for them)."""
    bars = sum(item.has_bar for item in items)
    sparks = sum(item.series is not None for item in items)
    fixed = sum(len(item.label) + 1 + len(item.value) + item.has_bar
                + (item.series is not None) for item in items) + 2 * (len(items) - 1)
    room = max(0, width - fixed)
    bar_w = min(BAR_MAX, room // (2 * bars)) if bars else 0
    spark_w = min(SPARK_MAX, (room - bars * bar_w) // sparks) if sparks else 0
    line = Text(no_wrap=True, overflow="crop")
    for i, item in enumerate(items):
        if i:
            line.append("  ")
        line.append(f"{item.label} ", style="bold")
        if item.has_bar and bar_w >= 3:
            line.append_text(bar(item.fraction, bar_w, g, item.color))
            line.append(" ")
        line.append(item.value, style=item.style)
        if item.series is not None and spark_w >= 3:
            line.append(" ")
            line.append(sparkline(recent(item.series, spark_w), spark_w, g, item.span),
                        style=item.color)
    return clip(line, width, g.ellipsis)


class SystemPane(ViewWidget):
    DEFAULT_CSS = "SystemPane { height: 5; }"

    def __init__(self, ctx, **kwargs) -> None:
        super().__init__(ctx, **kwargs)
        self.pinned: Optional[bool] = None  # m: shown/hidden; None: shown once there is data
        self.display = False

    # ---- visibility and size (the App calls these)
    def shown(self) -> bool:
        return self.ctx.view.system.samples > 0 if self.pinned is None else self.pinned

    def toggle(self) -> None:
        self.pinned = not self.shown()
        self.sync(urgent=True)

    def wanted_lines(self) -> int:
        system = self.ctx.view.system
        if not system.samples:
            return 1
        gpus = len(system.tracks()) if system.gpu_count == len(system.tracks()) else 1
        gpus = gpus if gpus <= GPU_LINES else 1
        return max(1, gpus) + 1 + (system.starving is not None)

    def height_for(self, room: int) -> int:
        """The pane's height with ``room`` lines to spare (0 while hidden)."""
        if not self.display:
            return 0
        return max(MIN_HEIGHT, min(self.wanted_lines() + 2, room))

    def sync(self, force: bool = False, urgent: bool = False) -> bool:
        shown = self.shown()
        toggled = shown != self.display
        self.display = shown
        if not shown:
            return toggled
        return super().sync(force or toggled, urgent) or toggled

    def change_key(self) -> Hashable:
        changes = self.ctx.view.changes
        return changes.system, changes.run

    # ---- drawing
    def title(self) -> Text:
        system, g = self.ctx.view.system, self.ctx.glyphs
        text = Text("System")
        if system.starving is not None:  # first: the title is cut from the right
            text.append(" ")
            text.append(f" ! STARVING {fmt.span(system.starving.seconds)} ",
                        style="bold white on red")
        if system.samples:
            parts = [system.host or fmt.NO_VALUE]
            if system.processes > 1:
                parts.append(f"{system.processes} processes")
            parts.append(f"{fmt.plural(system.samples, 'sample')}, last {fmt.clock(system.time)}")
            text.append(g.text(g.sep + g.sep.join(parts)))
        return text

    def gpu_lines(self, system: SystemView, lines: int, width: int) -> List[Text]:
        """One line per GPU when ``lines`` allow, else one of means and sums."""
        g = self.ctx.glyphs
        tracks = system.tracks()
        if system.gpu_count == 0:
            note = Text(g.text(system.unavailable or "no GPU in this run"), style="dim")
            return [clip(note, width, g.ellipsis)]
        if system.gpu_count == len(tracks) and len(tracks) <= min(lines, GPU_LINES):
            pad = max(len(t.label) for t in tracks)
            return [self.gpu_line(t.label.ljust(pad), t.util, t.util_series, t.mem_used,
                                  t.mem_total, t.mem_series, width) for t in tracks]
        label = f"{system.gpu_count} GPUs" if system.gpu_count > 1 else tracks[0].label
        return [self.gpu_line(label, system.gpu_util, system.util, system.gpu_mem_used,
                              system.gpu_mem_total, system.mem, width)]

    def gpu_line(self, label: str, util: Optional[float], util_series: BoundedSeries,
                 used: Optional[int], total: Optional[int], mem_series: BoundedSeries,
                 width: int) -> Text:
        low = util is not None and util < STARVING_GPU_UTIL
        share = used / total if used is not None and total else None
        return figures_line([
            Item(f"{label} util", f"{fmt.pct(util, 0):>4}", LOW if low else "",
                 None if util is None else util / 100, util_series, PERCENT, has_bar=True),
            Item("mem", fmt.size_of(used, total), "", share, mem_series, SHARE, "cyan",
                 has_bar=True),
        ], width, self.ctx.glyphs)

    def process_line(self, system: SystemView, width: int) -> Text:
        wait_high = system.data_wait is not None and system.data_wait > STARVING_DATA_WAIT
        return figures_line([
            Item("CPU", f"{fmt.number(system.cpu_percent, 0)}%", series=system.cpu,
                 color="magenta"),
            Item("RSS", fmt.size(system.rss), series=system.rss_series, color="magenta"),
            Item("data wait", fmt.share(system.data_wait), LOW if wait_high else "",
                 series=system.wait, span=SHARE, color="yellow"),
            Item("img/s", _rate(system.images_per_s), series=system.speed),
        ], width, self.ctx.glyphs)

    def brief(self, system: SystemView, width: int) -> Text:
        """Everything on one line, without bars or sparklines."""
        g = self.ctx.glyphs
        parts = []
        if system.gpu_count:
            parts.append(f"GPU {fmt.pct(system.gpu_util, 0)} mem "
                         f"{fmt.share(system.gpu_mem_share)}")
        parts += [f"CPU {fmt.number(system.cpu_percent, 0)}%", f"RSS {fmt.size(system.rss)}",
                  f"data wait {fmt.share(system.data_wait)}",
                  f"{_rate(system.images_per_s)} img/s"]
        return clip(Text(g.sep.join(parts), no_wrap=True), width, g.ellipsis)

    def warning(self, system: SystemView, width: int) -> Text:
        """The marker and the advice; the figures behind it when they fit whole."""
        g, starving = self.ctx.glyphs, system.starving
        text = Text(no_wrap=True)
        text.append(" ! ", style="bold white on red")
        text.append(f" {starving.advice}", style="bold red")
        figures = [f"data wait {fmt.share(starving.data_wait)}"]
        if starving.gpu_util is not None:
            figures.append(f"GPU {fmt.pct(starving.gpu_util, 0)}")
        more = f"{g.sep}{', '.join(figures)}"
        if text.cell_len + len(more) <= width:
            text.append(more)
        return clip(text, width, g.ellipsis)

    def lines(self, width: int, height: int) -> List[Text]:
        view, g = self.ctx.view, self.ctx.glyphs
        system = view.system
        if not system.samples:
            running = view.status == vm.RUNNING
            return [clip(Text(NO_DATA_YET if running else NO_DATA, style="dim"), width,
                         g.ellipsis)]
        out: List[Text] = []
        if system.starving is not None:
            out.append(self.warning(system, width))
        room = height - len(out)
        if room <= 1:
            return ([self.brief(system, width)] if room == 1 else []) + out[:height]
        return self.gpu_lines(system, room - 1, width) + [self.process_line(system, width)] + out
