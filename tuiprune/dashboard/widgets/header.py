"""Header: run name, model, data, method, sorting, ratios; status, elapsed and ETA."""

from __future__ import annotations

from typing import Hashable, List

from rich.text import Text

from tuiprune import format as fmt
from tuiprune.dashboard import timing
from tuiprune.dashboard import viewmodel as vm
from tuiprune.dashboard.widgets.base import ViewWidget, clip, spread

STATUS_STYLE = {
    vm.WAITING: "bold yellow", vm.RUNNING: "bold green", vm.COMPLETED: "bold cyan",
    vm.STOPPED: "bold yellow", vm.FAILED: "bold white on red", vm.LOST: "bold white on red",
}


class RunHeader(ViewWidget):
    def change_key(self) -> Hashable:
        # The clock is part of the key: the header redraws when its seconds move, not more.
        return (self.ctx.view.changes.run, self.status_text().plain, self.replay_text().plain)

    def status_text(self) -> Text:
        view = self.ctx.view
        status = view.status
        label = status.upper()
        if self.ctx.stop_requested and status == vm.RUNNING:
            label = "STOPPING"
        text = Text(f" {label} ", style=STATUS_STYLE.get(status, "bold"))
        text.append(f"  {fmt.duration(timing.elapsed(view, self.ctx.now()))}")
        eta = timing.run_eta(view)
        if eta is not None:
            text.append(f"  ETA {fmt.duration(eta)}")
        return text

    def replay_text(self) -> Text:
        player = self.ctx.player
        if player is None:
            return Text("")
        g = self.ctx.glyphs
        if player.caught_up:
            return Text("replay: end  ", style="dim")
        if player.paused:
            return Text("replay PAUSED  ", style="bold yellow")
        if player.speed == 0:
            return Text("replay: to the end  ", style="dim")
        return Text(f"replay {g.times}{player.speed:g}  ", style="dim")

    def lines(self, width: int, height: int) -> List[Text]:
        view, g = self.ctx.view, self.ctx.glyphs
        title = Text("tuiprune", style="bold reverse")
        title.append("  ")
        title.append(g.text(view.name or view.run_id or "waiting for the run to start"),
                     style="bold")
        parts = [view.model_name, view.dataset, view.method.upper(), view.sorting]
        if view.head_ratio or view.mlp_ratio:
            parts.append(f"head {fmt.ratios(view.head_ratio)} mlp {fmt.ratios(view.mlp_ratio)}")
        parts.append(view.criterion)
        info = Text(g.text(g.sep.join(p for p in parts if p)), no_wrap=True)
        right = self.replay_text()
        right.append_text(self.status_text())
        return [spread(title, right, width, g.ellipsis), clip(info, width, g.ellipsis)]
