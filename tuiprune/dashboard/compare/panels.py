"""The compare screen's panels: accuracy vs sparsity, accuracy over epochs, per-layer sparsity
of a chosen state and the runs with the config keys that differ. Each run keeps its colour
(and in ``--ascii`` its letter as the chart mark) in every panel (``ComparedRun.colour``,
``.mark``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, List, Optional, Tuple

from rich.text import Text
from textual.containers import VerticalScroll

from tuiprune import format as fmt
from tuiprune.dashboard.charts import Line, line_chart
from tuiprune.dashboard.compare.model import (VALUE_LABEL, CompareContext, ComparedRun,
                                              LayerCell, change_key, config_diff,
                                              epoch_points, ended, layer_table,
                                              planned_epochs, sparsity_points,
                                              state_starts)
from tuiprune.dashboard.widgets.base import ViewWidget, clip, set_title, spread
from tuiprune.dashboard.widgets.scrolling import SCROLL_BINDINGS
from tuiprune.ls_command import STATUS_STYLE, value_parts


def run_label(run: ComparedRun, ctx: CompareContext) -> Text:
    """``A ●`` (``A`` in ASCII) in the run's colour."""
    g = ctx.glyphs
    text = Text()
    text.append(run.letter, style=f"bold {run.colour}")
    if not g.ascii:
        text.append(f" {run.mark(g)}", style=run.colour)
    return text


def _y_range(ys: List[float]) -> Tuple[float, float]:
    return max(0.0, min(ys) - 2), min(100.0, max(ys) + 2)


class CompareHeader(ViewWidget):
    """The title, and a legend: each run's letter, colour and name."""

    def change_key(self) -> Hashable:
        return self.ctx.mode, tuple(r.status for r in self.ctx.runs)

    def lines(self, width: int, height: int) -> List[Text]:
        ctx, g = self.ctx, self.ctx.glyphs
        title = Text("tuiprune", style="bold reverse")
        title.append(f"  compare {len(ctx.runs)} runs")
        if ctx.where:
            title.append(f" in {g.text(fmt.printable(ctx.where, newlines=False))}")
        right = Text(f"v: {VALUE_LABEL[ctx.mode]}", style="dim")
        legend = Text(no_wrap=True)
        for run in ctx.runs:
            legend.append_text(run_label(run, ctx))
            legend.append(f" {g.text(run.name)}  ")
        return [spread(title, right, width, g.ellipsis), clip(legend, width, g.ellipsis)]


class SparsityChart(ViewWidget):
    """Accuracy vs sparsity: one line per run, one point per state that has ended."""

    def change_key(self) -> Hashable:
        return change_key(self.ctx.runs), self.ctx.mode

    def title(self) -> Text:
        return Text(f"Accuracy vs sparsity{self.ctx.glyphs.sep}{VALUE_LABEL[self.ctx.mode]}")

    def lines(self, width: int, height: int) -> List[Text]:
        ctx, g = self.ctx, self.ctx.glyphs
        lines = [Line(sparsity_points(r.view, ctx.mode), r.colour, r.mark(g))
                 for r in ctx.runs]
        xs = [x for line in lines for x, _ in line.points]
        ys = [y for line in lines for _, y in line.points]
        if not xs:
            return [Text("no state has ended yet: one point per state, at its sparsity",
                         style="dim")]
        lo, hi = min(xs), max(xs)
        if hi - lo < 1:
            lo, hi = lo - 1, hi + 1
        ticks = [(x, f"{x:.0f}%") for x in (lo, (lo + hi) / 2, hi)]
        return line_chart(lines, width, height, g, y_range=_y_range(ys), x_range=(lo, hi),
                          x_labels=ticks if height >= 5 else ())


class EpochChart(ViewWidget):
    """Val accuracy per epoch, all runs overlaid; the states marked."""

    def change_key(self) -> Hashable:
        return change_key(self.ctx.runs)

    def title(self) -> Text:
        g = self.ctx.glyphs
        return Text(f"Val accuracy per epoch{g.sep}{g.step_mark} state")

    def lines(self, width: int, height: int) -> List[Text]:
        ctx, g = self.ctx, self.ctx.glyphs
        lines = [Line(epoch_points(r.view), r.colour, r.mark(g)) for r in ctx.runs]
        ys = [y for line in lines for _, y in line.points]
        if not ys:
            return [Text("no epoch has finished yet", style="dim")]
        starts = [state_starts(r.view) for r in ctx.runs]
        end = max([x for line in lines for x, _ in line.points]
                  + [planned_epochs(r.view) for r in ctx.runs])
        steps = sorted({x + 0.5 for run_starts in starts for x in run_starts[1:]})
        labels = [(x + 1, f"s{s}") for s, x in enumerate(max(starts, key=len))]
        return line_chart(lines, width, height, g, y_range=_y_range(ys),
                          x_range=(0.5, end + 0.5), steps=steps,
                          x_labels=labels if height >= 5 else ())


@dataclass(frozen=True)
class CellFormat:
    """How the per-layer table writes a run's cell: heads as kept/all (or kept alone, under
    ``hd``), MLP sparsity with ``decimals``, ``gap`` spaces between runs. The first of
    :data:`FORMATS` that fits the width is used."""

    ratio: bool
    decimals: int
    gap: int

    @property
    def heads_word(self) -> str:
        return "heads" if self.ratio else "hd"

    @property
    def pct_w(self) -> int:
        return 5 + self.decimals if self.decimals else 4

    def heads(self, cell: LayerCell) -> str:
        return fmt.ratio(cell.heads_kept, cell.heads_total) if self.ratio else \
            fmt.count(cell.heads_kept)

    def pct(self, cell: LayerCell) -> str:
        return fmt.NO_VALUE if cell.mlp_sparsity is None else \
            f"{cell.mlp_sparsity:.{self.decimals}f}%"


FORMATS = (CellFormat(True, 1, 2), CellFormat(True, 0, 2), CellFormat(False, 0, 1))


@dataclass(frozen=True)
class TableLayout:
    form: CellFormat
    heads_w: int
    width: int  # of the whole table

    @property
    def cell_w(self) -> int:
        return self.heads_w + 1 + self.form.pct_w

    def cell(self, cell: LayerCell) -> str:
        if not cell.known:
            return fmt.NO_VALUE.rjust(self.cell_w)
        return f"{self.form.heads(cell).rjust(self.heads_w)} {self.form.pct(cell).rjust(self.form.pct_w)}"


class LayerRows(ViewWidget):
    """Per block, each run's heads kept and MLP sparsity in the model the state ends with."""

    LABEL_W = 5

    def change_key(self) -> Hashable:
        return change_key(self.ctx.runs), self.ctx.state

    def layout(self, width: Optional[int] = None) -> TableLayout:
        """The first format whose table fits ``width`` (the most detailed one without)."""
        _, rows, totals = layer_table(self.ctx.runs, self.ctx.state)
        cells = [c for c in totals + [c for row in rows.values() for c in row] if c.known]
        n = max(1, len(self.ctx.runs))
        for form in FORMATS:
            heads_w = max([len(form.heads_word)] + [len(form.heads(c)) for c in cells])
            table = self.LABEL_W + n * (heads_w + 1 + form.pct_w) + (n - 1) * form.gap
            found = TableLayout(form, heads_w, table)
            if width is None or table <= width:
                return found
        return found

    def wanted_width(self) -> int:
        return self.layout().width

    def lines(self, width: int, height: int) -> List[Text]:
        ctx, g = self.ctx, self.ctx.glyphs
        state = ctx.state
        blocks, rows, totals = layer_table(ctx.runs, state)
        if not any(c.known for c in totals):
            return [Text(f"state {state} has not ended in any run yet", style="dim")]
        lay = self.layout(width)
        gap = " " * lay.form.gap
        head = Text(" " * self.LABEL_W, no_wrap=True)
        sub = Text(" " * self.LABEL_W, style="dim", no_wrap=True)
        for i, run in enumerate(ctx.runs):
            label = run_label(run, ctx)
            label.append(" " * max(0, lay.cell_w - label.cell_len))
            head.append_text(label)
            sub.append(f"{lay.form.heads_word.rjust(lay.heads_w)} "
                       f"{'mlp'.rjust(lay.form.pct_w)}")
            if i < len(ctx.runs) - 1:
                head.append(gap)
                sub.append(gap)
        out = [head, sub, self.row_text("all", totals, lay, "bold")]
        out += [self.row_text(f"L{b}", rows[b], lay) for b in blocks]
        return [clip(t, width, g.ellipsis) for t in out]

    def row_text(self, label: str, cells: List[LayerCell], lay: TableLayout,
                 style: str = "") -> Text:
        text = Text(label.ljust(self.LABEL_W), style="bold", no_wrap=True)
        for i, cell in enumerate(cells):
            if i:
                text.append(" " * lay.form.gap)
            text.append(lay.cell(cell), style=style or ("" if cell.known else "dim"))
        return text


def flow(parts: List[Text], width: int, indent: int = 4) -> List[Text]:
    """``parts`` laid out in lines of ``width`` cells, two spaces apart; a part that does not
    fit starts a new line, indented (a part wider than a line is cut)."""
    lines: List[Text] = []
    line: Optional[Text] = None
    for part in parts:
        if line is not None and line.cell_len + 2 + part.cell_len <= width:
            line.append("  ")
            line.append_text(part)
            continue
        if line is not None:
            lines.append(line)
        line = Text(" " * indent if lines or line is not None else "", no_wrap=True)
        line.append_text(part)
    if line is not None:
        lines.append(line)
    return lines


class RunLines(ViewWidget):
    """Per run: letter, name, status, states and best val; then its config values that differ
    between the runs."""

    def change_key(self) -> Hashable:
        return change_key(self.ctx.runs), tuple(r.status for r in self.ctx.runs)

    def lines(self, width: int, height: int) -> List[Text]:
        ctx, g = self.ctx, self.ctx.glyphs
        keys = config_diff(ctx.runs)
        out: List[Text] = []
        for run in ctx.runs:
            view = run.view
            done = sum(1 for st in view.states if ended(st))
            best = next((st.best_val_acc for st in reversed(view.states)
                         if st.best_val_acc is not None), None)  # the last state's, as ls
            name = run_label(run, ctx)
            name.append(f" {g.text(run.name)}", style="bold")
            parts = [name, Text(run.status, style=STATUS_STYLE.get(run.status, "")),
                     Text(f"{done}/{len(view.states) or run.config.get('prune.states') or fmt.NO_VALUE}"),
                     Text(f"best {fmt.pct(best)}")]
            if keys and run.config:
                values = {k: run.config.get(k) for k in keys}
                parts += [Text(g.text(part), style="dim") for part in value_parts(values)]
            out += [clip(line, width, g.ellipsis) for line in flow(parts, width)]
        if not keys:
            out.append(Text("no config key differs between these runs", style="dim"))
        return out


class ScrollPanel(VerticalScroll, inherit_bindings=False):
    """A bordered panel that scrolls its one :class:`ViewWidget` (Tab focuses it, ↑↓ scroll)."""

    BINDINGS = SCROLL_BINDINGS

    def __init__(self, body: ViewWidget, title: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.body = body
        self.title_text = title

    def compose(self):
        yield self.body

    def sync(self, force: bool = False, urgent: bool = False) -> bool:
        if not self.body.sync(force, urgent):
            return False
        set_title(self, Text(self.title_text_now()), self.body.ctx.glyphs.ellipsis)
        return True

    def title_text_now(self) -> str:
        ctx = self.body.ctx
        return self.title_text.format(state=ctx.state, sep=ctx.glyphs.sep)
