"""Per-layer sparsity of the selected state: attention heads and MLP neurons kept, as bars."""

from __future__ import annotations

from typing import Hashable, List, Optional, Tuple

from rich.text import Text
from textual.containers import VerticalScroll

from engine.runlog import structure_in_force
from tuiprune import format as fmt
from tuiprune.dashboard.charts import bar, segmented_bar
from tuiprune.dashboard.context import Context
from tuiprune.dashboard.viewmodel import LayerRow, RunView, Structure
from tuiprune.dashboard.widgets.base import ViewWidget, clip, set_title
from tuiprune.dashboard.widgets.scrolling import SCROLL_BINDINGS

ATTN_STYLE, MLP_STYLE = "red", "blue"
MAX_ROWS = 256  # blocks drawn (real ViTs have a few dozen)


def structure_for(view: RunView, index: int) -> Tuple[Optional[Structure], str]:
    """The mask to show for state ``index`` and what it is: the pruning step after it (the
    seed report's table), else the RSST target it squeezes toward, else the structure in
    force at its end by the one rule of ``engine.runlog.structure_in_force`` (its hard cut,
    or an earlier step or cut)."""
    if not view.states:
        return None, "no state yet"
    st = view.states[index]
    if st.pruned is not None:
        if st.pruned.applied:
            return st.pruned, f"after state {index}"
        return st.pruned, f"target after state {index} (cut at the end of state {index + 1})"
    applied = {k: s.pruned.applied for k, s in enumerate(view.states) if s.pruned is not None}
    cuts = [k for k, s in enumerate(view.states) if s.hard_cut is not None]
    found = structure_in_force(index, applied, cuts, len(view.states) - 1)
    if found == ("hard_cut", index):
        return st.hard_cut, f"after state {index} (hard cut)"
    before = view.states[index - 1].pruned if index else None
    if before is not None and not before.applied:
        return before, f"target squeezed during state {index} (cut at its end)"
    if found is not None:
        kind, k = found
        s = view.states[k].hard_cut if kind == "hard_cut" else view.states[k].pruned
        return s, f"in force during state {index} (step after state {s.state})"
    return None, f"state {index}: dense (no pruning step yet)"


def _frac(value: Optional[float]) -> Optional[float]:
    return None if value is None else value / 100.0


class SparsityRows(ViewWidget):
    """One row per transformer block."""

    def change_key(self) -> Hashable:
        changes = self.ctx.view.changes
        return changes.structure, changes.states, changes.run, self.ctx.selected

    def row(self, layer: LayerRow, attn_w: int, mlp_w: int) -> Text:
        g = self.ctx.glyphs
        text = Text(no_wrap=True)
        text.append(f"L{layer.block:<3}", style="bold")
        text.append("attn ")
        heads_total = layer.heads_total or 0
        if heads_total and layer.heads_kept is not None:
            text.append_text(segmented_bar(heads_total - layer.heads_kept, heads_total, attn_w, g,
                                           ATTN_STYLE))
        else:
            text.append_text(bar(_frac(layer.attn_sparsity), attn_w, g, ATTN_STYLE))
        text.append(f" {fmt.pct(layer.attn_sparsity, 1):>6} ")
        text.append(fmt.ratio(layer.heads_kept, layer.heads_total).rjust(5), style="dim")
        text.append("  mlp ")
        text.append_text(bar(_frac(layer.mlp_sparsity), mlp_w, g, MLP_STYLE))
        text.append(f" {fmt.pct(layer.mlp_sparsity, 1):>6} ")
        text.append(fmt.ratio(layer.neurons_kept, layer.neurons_total).rjust(9), style="dim")
        return text

    def lines(self, width: int, height: int) -> List[Text]:
        view, g = self.ctx.view, self.ctx.glyphs
        structure, caption = structure_for(view, self.ctx.selected)
        if structure is None:
            return [Text(caption, style="dim")]
        head = Text(f"heads kept {fmt.ratio(structure.heads_kept, structure.heads_total)}"
                    f"{g.sep}neurons kept "
                    f"{fmt.ratio(structure.neurons_kept, structure.neurons_total)}"
                    f"{g.sep}bars: share pruned", style="dim", no_wrap=True)
        out = [clip(head, width, g.ellipsis)]
        rest = max(2, width - 47)
        heads = max((layer.heads_total or 0 for layer in structure.layers), default=0)
        attn_w = rest // 3
        if 0 < heads <= rest // 2:  # one segment per head; more heads than cells: a plain bar
            attn_w = max(heads, attn_w)
            attn_w -= attn_w % heads
        mlp_w = max(2, rest - attn_w)
        out += [clip(self.row(layer, attn_w, mlp_w), width, g.ellipsis)
                for layer in structure.layers[:MAX_ROWS]]
        if len(structure.layers) > MAX_ROWS:
            more = fmt.plural(len(structure.layers) - MAX_ROWS, "more block")
            out.append(Text(f"{g.ellipsis} {more}", style="dim"))
        return out


class SparsityPanel(VerticalScroll, inherit_bindings=False):
    """Scrolls the rows when the terminal is short (focus it with Tab, then up/down)."""

    BINDINGS = SCROLL_BINDINGS

    def __init__(self, ctx: Context, **kwargs) -> None:
        super().__init__(**kwargs)
        self.ctx = ctx
        self.rows = SparsityRows(ctx, id="sparsity-rows")
        self.wanted_height = 3  # all rows, their heading and the border

    def compose(self):
        yield self.rows

    def title(self) -> Text:
        view, g = self.ctx.view, self.ctx.glyphs
        structure, caption = structure_for(view, self.ctx.selected)
        if structure is None:
            return Text("Sparsity")
        return Text(f"Sparsity {caption}{g.sep}overall {fmt.pct(structure.sparsity)} "
                    f"({fmt.count(structure.zeros)} / {fmt.count(structure.total)} zeros)")

    def sync(self, force: bool = False, urgent: bool = False) -> bool:
        if not self.rows.sync(force, urgent):
            return False
        set_title(self, self.title(), self.ctx.glyphs.ellipsis)
        structure, _ = structure_for(self.ctx.view, self.ctx.selected)
        self.wanted_height = 3 + (min(len(structure.layers), MAX_ROWS + 1)
                                  if structure is not None else 0)
        return True
