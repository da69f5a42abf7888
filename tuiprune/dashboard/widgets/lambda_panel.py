"""RSST λ of the selected state: value, updates, what is squeezed, and its ramp as a chart."""

from __future__ import annotations

from typing import Hashable, List

from rich.text import Text

from tuiprune import format as fmt
from tuiprune.dashboard.charts import Line, line_chart
from tuiprune.dashboard.widgets.base import ViewWidget, clip

LAMBDA_STYLE = "yellow"


class LambdaPanel(ViewWidget):
    MIN_INTERVAL = 1.0  # λ moves with every step; its chart need not redraw more than 1/s
    def change_key(self) -> Hashable:
        changes = self.ctx.view.changes
        return changes.lam, changes.run, changes.states, self.ctx.selected

    def title(self) -> Text:
        g = self.ctx.glyphs
        name = "lambda" if g.ascii else "λ"
        view = self.ctx.view
        if view.method and not view.is_rsst:
            return Text(f"{name} ({g.text(view.method)})")
        return Text(f"RSST {name} (state {self.ctx.selected})")

    def lines(self, width: int, height: int) -> List[Text]:
        view, g = self.ctx.view, self.ctx.glyphs
        name = "lambda" if g.ascii else "λ"
        if not view.method:
            return [Text("waiting for the run to start", style="dim")]
        if not view.is_rsst:
            return [Text(f"{name} does not apply to {g.text(view.method)}: it cuts the pruned "
                         "heads and neurons at once after each state.", style="dim")]
        if not view.states:
            return [Text("no state yet", style="dim")]
        st = view.states[self.ctx.selected]
        last = st.lambda_last
        out: List[Text] = []
        if last is not None:
            head = Text(no_wrap=True)
            head.append(f"{name} {fmt.sci(last.value)}", style=f"bold {LAMBDA_STYLE}")
            head.append(f"  {fmt.ratio(last.step, last.steps)} updates")
            out.append(head)
        squeeze = last.squeeze if last is not None else st.squeezing
        if squeeze is not None:
            out.append(Text(f"squeezing {fmt.count(squeeze.heads)} heads{g.sep}"
                            f"{fmt.count(squeeze.neurons)} neurons{g.sep}"
                            f"{fmt.count(squeeze.regularized)} weights", no_wrap=True))
        cut = st.hard_cut
        if cut is not None:
            out.append(Text(f"hard cut: val {fmt.pct(cut.val_acc_before)} -> "
                            f"{fmt.pct(cut.val_acc_after)}{g.sep}residual "
                            f"{fmt.sci(cut.residual_norm)}", no_wrap=True))
        out = [clip(t, width, g.ellipsis) for t in out]
        if last is None:  # a note, wrapped to the panel
            if st.index == 0:
                note = f"state 0 has no target yet: {name} starts in state 1."
            elif st.status == "pending":
                note = f"state {st.index} has not started."
            else:
                note = f"no {name} update in state {st.index} yet."
            out.insert(0, Text(note, style="dim"))
        points = st.lambdas.snapshot()
        room = height - len(out)
        if len(points) >= 2 and room >= 3:
            top = max(y for _, y in points)
            out += line_chart([Line(points, LAMBDA_STYLE, g.line_mark)], width, room, g,
                              y_range=(0.0, top if top > 0 else 1.0), y_format=fmt.sci)
        return out
