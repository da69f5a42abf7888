"""State strip: every state with its status and, once done, best val acc and sparsity."""

from __future__ import annotations

from typing import Hashable, List

from rich.text import Text

from tuiprune import format as fmt
from tuiprune.dashboard import viewmodel as vm
from tuiprune.dashboard.viewmodel import StateView
from tuiprune.dashboard.widgets.base import ViewWidget, clip

MARK_STYLE = {vm.ACTIVE: "bold green", vm.DONE: "cyan", vm.FAILED: "bold red",
              vm.LOST: "bold red", vm.STOPPED: "yellow", vm.PENDING: "dim"}


class StateStrip(ViewWidget):
    def change_key(self) -> Hashable:
        changes = self.ctx.view.changes
        return changes.states, changes.run, self.ctx.selected

    def item(self, st: StateView) -> str:
        text = f"{st.index} {self.ctx.glyphs.state_mark(st.status)}"
        if st.status == vm.DONE:
            text += f" {fmt.pct(st.best_val_acc, 1)} sp {fmt.pct(st.sparsity_end, 1)}"
        elif st.status == vm.ACTIVE and st.epochs:
            text += f" e{st.epochs_done}/{st.epochs}"
        return f"[{text}]"

    def lines(self, width: int, height: int) -> List[Text]:
        g, view = self.ctx.glyphs, self.ctx.view
        line = Text("States ", style="bold", no_wrap=True)
        if not view.states:
            line.append("none yet", style="dim")
            return [line]
        items = _Items(self, view.states)  # only the states that fit are formatted
        selected = self.ctx.selected
        # The widest window of states around the selected one that fits.
        lo = hi = selected
        used = len(items[selected])
        room = width - line.cell_len - 2 * (len(g.ellipsis) + 1)
        while True:
            grown = False
            for side in (1, -1):
                j = hi + 1 if side == 1 else lo - 1
                if 0 <= j < len(items) and used + 1 + len(items[j]) <= room:
                    used += 1 + len(items[j])
                    lo, hi = min(lo, j), max(hi, j)
                    grown = True
            if not grown:
                break
        if lo > 0:
            line.append(g.ellipsis + " ", style="dim")
        for i in range(lo, hi + 1):
            st = view.states[i]
            style = MARK_STYLE.get(st.status, "")
            line.append(items[i], style=f"{style} reverse" if i == selected else style)
            line.append(" ")
        if hi < len(items) - 1:
            line.append(g.ellipsis, style="dim")
        return [clip(line, width, g.ellipsis)]


class _Items:
    """``items[i]``: state ``i``'s label, formatted on first use."""

    def __init__(self, strip: StateStrip, states: List[StateView]) -> None:
        self.strip, self.states, self.done = strip, states, {}

    def __len__(self) -> int:
        return len(self.states)

    def __getitem__(self, i: int) -> str:
        if i not in self.done:
            self.done[i] = self.strip.item(self.states[i])
        return self.done[i]
