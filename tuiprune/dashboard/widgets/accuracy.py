"""Accuracy chart: train and val accuracy per epoch across all states, pruning steps marked."""

from __future__ import annotations

from typing import Hashable, List, Tuple

from rich.text import Text

from tuiprune import format as fmt
from tuiprune.dashboard.charts import Line, line_chart
from tuiprune.dashboard.viewmodel import RunView
from tuiprune.dashboard.widgets.base import ViewWidget, clip

TRAIN_STYLE, VAL_STYLE = "cyan", "magenta"


def state_offsets(view: RunView) -> Tuple[List[int], int]:
    """The x axis counts epochs across states: where each state starts, and the epochs
    planned in all."""
    offsets, offset = [], 0
    for st in view.states:
        offsets.append(offset)
        offset += max(st.epochs or 0, st.epochs_done)
    return offsets, offset


def series(view: RunView, offsets: List[int]) -> Tuple[list, list]:
    train, val = [], []
    for st, offset in zip(view.states, offsets):
        for pt in st.ordered_points():
            x = offset + pt.epoch + 1
            if pt.train_acc is not None:
                train.append((x, pt.train_acc))
            if pt.val_acc is not None:
                val.append((x, pt.val_acc))
    return train, val


class AccuracyChart(ViewWidget):
    def change_key(self) -> Hashable:
        return self.ctx.view.changes.states

    def title(self) -> Text:
        g = self.ctx.glyphs
        text = Text("Accuracy  ")
        text.append(g.train_mark, style="" if g.ascii else TRAIN_STYLE)
        text.append(" train  ")
        text.append(g.val_mark, style="" if g.ascii else VAL_STYLE)
        text.append(f" val  {g.step_mark} prune")
        return text

    def summary(self) -> Text:
        view = self.ctx.view
        last = next((st.last_point() for st in reversed(view.states) if st.points), None)
        text = Text(no_wrap=True)
        if last is None:
            return text
        text.append(f"s{last.state} e{last.epoch}: ")
        text.append(f"train {fmt.pct(last.train_acc)}", style=TRAIN_STYLE)
        text.append("  ")
        text.append(f"val {fmt.pct(last.val_acc)}", style=VAL_STYLE)
        best = max((st.best_val_acc for st in view.states if st.best_val_acc is not None),
                   default=None)
        text.append(f"  best {fmt.pct(best)}")
        return text

    def lines(self, width: int, height: int) -> List[Text]:
        view, g = self.ctx.view, self.ctx.glyphs
        offsets, total = state_offsets(view)
        train, val = series(view, offsets)
        if not train and not val:
            return [Text("no finished epoch yet", style="dim")]
        steps = [o + 0.5 for o in offsets[1:]]
        labels = [(o + 1, f"s{i}") for i, o in enumerate(offsets)]
        ys = [y for _, y in train + val]
        lo, hi = max(0.0, min(ys) - 2), min(100.0, max(ys) + 2)
        chart = line_chart([Line(train, TRAIN_STYLE, g.train_mark),
                            Line(val, VAL_STYLE, g.val_mark)],
                           width, height - 1, g, y_range=(lo, hi), x_range=(0.5, max(total, 1) + 0.5),
                           steps=steps, x_labels=labels if height >= 5 else ())
        return chart + [clip(self.summary(), width, g.ellipsis)]
