"""Header: run name, ranks and hosts, model, data, method, sorting, ratios; status, elapsed
and ETA, and how long a remote engine's log has been silent."""

from __future__ import annotations

import time
from typing import Hashable, List, Optional

from rich.text import Text

from tuiprune import format as fmt
from tuiprune.dashboard import timing
from tuiprune.dashboard import viewmodel as vm
from tuiprune.dashboard.glyphs import Glyphs
from tuiprune.dashboard.liveness import LATE, QUIET, SILENT, news_age, news_level
from tuiprune.dashboard.widgets.base import ViewWidget, clip, spread

STATUS_STYLE = {
    vm.WAITING: "bold yellow", vm.RUNNING: "bold green", vm.COMPLETED: "bold cyan",
    vm.STOPPED: "bold yellow", vm.FAILED: "bold white on red", vm.LOST: "bold white on red",
}
NEWS_STYLE = {QUIET: "dim", LATE: "bold yellow", SILENT: "bold white on red"}
NAME_MIN = 8  # cells the run's name keeps before the ranks and hosts give way


def short_host(host: str) -> str:
    """``node01`` of ``node01.cluster.example``."""
    return host.split(".", 1)[0] or host


def where_text(view: vm.RunView, g: Glyphs) -> str:
    """``×4 on node01,node02`` for a distributed run, ``on node07`` for an engine on another
    host, else ''."""
    hosts = list(dict.fromkeys(short_host(h) for h in view.hosts if h))
    if view.world_size and view.world_size > 1:
        text = f"{g.times}{view.world_size}"
        if len(hosts) > 2:
            return f"{text} on {hosts[0]} +{len(hosts) - 1} hosts"
        return f"{text} on {','.join(hosts)}" if hosts else text
    return f"on {short_host(view.remote_host)}" if view.remote_host else ""


class RunHeader(ViewWidget):
    def change_key(self) -> Hashable:
        # The clock is part of the key: the header redraws when its seconds move, not more.
        return (self.ctx.view.changes.run, self.status_text().plain, self.replay_text().plain)

    def wall_now(self) -> Optional[float]:
        """Wall time once the screen shows the log's present: a watch, or a replay that has
        reached the end of its log."""
        player = self.ctx.player
        if self.ctx.mode == "watch" or (player is not None and player.caught_up):
            return time.time()
        return None

    def status_text(self) -> Text:
        view = self.ctx.view
        status = view.status
        label = status.upper()
        if self.ctx.stop_requested and status == vm.RUNNING:
            label = "STOPPING"
        text = Text(f" {label} ", style=STATUS_STYLE.get(status, "bold"))
        age = news_age(view, self.wall_now())
        level = news_level(age)
        if level is not None:
            text.append("  ")
            text.append(f"no news for {fmt.span(age)}", style=NEWS_STYLE[level])
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

    def title_text(self, room: int) -> Text:
        """``tuiprune  NAME  ×4 on node01,node02`` in ``room`` cells; the name gives way
        first."""
        view, g = self.ctx.view, self.ctx.glyphs
        title = Text("tuiprune", style="bold reverse")
        title.append("  ")
        prefix = title.cell_len
        title.append(g.text(view.name or view.run_id or "waiting for the run to start"),
                     style="bold")
        where = Text(g.text(where_text(view, g)), style="bold magenta")
        if not where:
            return title
        keep = max(prefix + NAME_MIN, room - where.cell_len - 2)
        title = clip(title, keep, g.ellipsis)
        title.append("  ")
        title.append_text(clip(where, max(0, room - title.cell_len), g.ellipsis))
        return title

    def lines(self, width: int, height: int) -> List[Text]:
        view, g = self.ctx.view, self.ctx.glyphs
        parts = [view.model_name, view.dataset, view.method.upper(), view.sorting]
        if view.head_ratio or view.mlp_ratio:
            parts.append(f"head {fmt.ratios(view.head_ratio)} mlp {fmt.ratios(view.mlp_ratio)}")
        parts.append(view.criterion)
        info = Text(g.text(g.sep.join(p for p in parts if p)), no_wrap=True)
        right = self.replay_text()
        right.append_text(self.status_text())
        title = self.title_text(width - right.cell_len - 1)
        return [spread(title, right, width, g.ellipsis), clip(info, width, g.ellipsis)]
