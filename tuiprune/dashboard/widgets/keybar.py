"""The bottom line: the main keys, or a short message after an action."""

from __future__ import annotations

from typing import Hashable, List

from rich.text import Text

from tuiprune.dashboard.keys import key_bar
from tuiprune.dashboard.widgets.base import ViewWidget, clip


class KeyBar(ViewWidget):
    def change_key(self) -> Hashable:
        return self.ctx.message, self.ctx.mode

    def lines(self, width: int, height: int) -> List[Text]:
        g = self.ctx.glyphs
        if self.ctx.message:
            return [clip(Text(g.text(self.ctx.message), style="bold"), width, g.ellipsis)]
        return [clip(Text(key_bar(self.ctx.mode, g, self.ctx.back), style="dim"), width,
                     g.ellipsis)]
