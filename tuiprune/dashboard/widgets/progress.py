"""Progress of the current epoch (batches, images/s, ETA) and its batch loss/acc sparklines;
how the run ended once it has."""

from __future__ import annotations

from typing import Hashable, List

from rich.text import Text

from tuiprune import format as fmt
from tuiprune.dashboard import timing
from tuiprune.dashboard import viewmodel as vm
from tuiprune.dashboard.charts import bar, sparkline
from tuiprune.dashboard.widgets.base import ViewWidget, clip

END_STYLE = {vm.COMPLETED: "bold cyan", vm.STOPPED: "bold yellow", vm.FAILED: "bold red",
             vm.LOST: "bold red"}


class EpochProgress(ViewWidget):
    def change_key(self) -> Hashable:
        changes = self.ctx.view.changes
        return changes.progress, changes.states, changes.run

    def epoch_line(self, width: int) -> Text:
        view, g = self.ctx.view, self.ctx.glyphs
        p = view.progress
        text = Text(no_wrap=True)
        if p.state is None:
            text.append("no epoch started yet", style="dim")
            return text
        epochs = view.states[p.state].epochs if p.state < len(view.states) else None
        text.append(f"state {p.state}{g.sep}epoch {p.epoch + 1}/{epochs or fmt.NO_VALUE}"
                    f"{g.sep}", style="bold")
        batch = 0 if p.batch is None else p.batch + 1
        tail = (f" {timing.epoch_fraction(view) * 100:3.0f}%{g.sep}batch {batch}/"
                f"{fmt.count(p.batches)}{g.sep}{fmt.count(round(p.images_per_s or 0))} img/s"
                f"{g.sep}ETA {fmt.duration(timing.epoch_eta(view))}")
        room = width - text.cell_len - len(tail)
        if room >= 6:
            text.append_text(bar(timing.epoch_fraction(view), min(room, 30), g, "green"))
        text.append(tail)
        return text

    def spark_line(self, width: int) -> Text:
        p, g = self.ctx.view.progress, self.ctx.glyphs
        text = Text(no_wrap=True)
        loss = [y for _, y in p.loss.snapshot()]
        acc = [y for _, y in p.acc.snapshot()]
        if not loss and not acc:
            return text
        each = max(4, (width - 30) // 2)
        if loss:
            text.append(f"loss {fmt.sci(loss[-1]):>7} ")
            text.append(sparkline(loss, each, g), style="yellow")
            text.append("  ")
        if acc:
            text.append(f"acc {fmt.pct(acc[-1], 1):>6} ")
            text.append(sparkline(acc, each, g), style="green")
        return text

    def end_line(self) -> Text:
        view, g = self.ctx.view, self.ctx.glyphs
        end = view.ended
        text = Text(f"run {g.text(view.status)}", style=END_STYLE.get(view.status, "bold"))
        if end is None:  # the engine is lost
            text.append(f"{g.sep}see the log pane (l) for the last lines of engine.log")
            return text
        text.append(f"{g.sep}best val {fmt.pct(end.best_val_acc)}"
                    f"{g.sep}final val {fmt.pct(end.final_val_acc)}")
        if end.test_acc is not None:
            text.append(f"{g.sep}test {fmt.pct(end.test_acc)}")
        text.append(f"{g.sep}sparsity {fmt.pct(end.sparsity)}")
        if end.message:
            text.append(f"{g.sep}{g.text(end.message)}")
        return text

    def lines(self, width: int, height: int) -> List[Text]:
        g = self.ctx.glyphs
        if self.ctx.view.finished:
            first = self.end_line()
        else:
            first = self.epoch_line(width)
        return [clip(first, width, g.ellipsis), clip(self.spark_line(width), width, g.ellipsis)]
