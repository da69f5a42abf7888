"""What every widget needs besides the view model: glyphs, mode, and the screen's own state
(selection, replay, a stop requested, a short message), which is not the run's and so not in
the view model."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from tuiprune.dashboard.glyphs import UNICODE, Glyphs
from tuiprune.dashboard.reducer import Reducer
from tuiprune.dashboard.viewmodel import RunView


@dataclass
class Context:
    reducer: Reducer = field(default_factory=Reducer)
    glyphs: Glyphs = UNICODE
    mode: str = "watch"  # "watch" | "replay"
    run_dir: Optional[Path] = None
    player: Optional[object] = None  # a tuiprune.dashboard.player.Player in replay
    chosen: Optional[int] = None  # the state picked with left/right; None follows the run
    message: str = ""  # a short message in the key bar after an action
    stop_requested: bool = False  # the user asked the engine to stop (S, y)
    back: bool = False  # opened from the run browser: Esc goes back to it

    @property
    def view(self) -> RunView:
        return self.reducer.view

    @property
    def current(self) -> int:
        """The state the run is in (or reached last)."""
        view = self.view
        if view.current_state is not None:
            return view.current_state
        return 0

    @property
    def selected(self) -> int:
        count = len(self.view.states)
        index = self.current if self.chosen is None else self.chosen
        return max(0, min(index, count - 1)) if count else 0

    def select(self, delta: int) -> None:
        count = len(self.view.states)
        if not count:
            return
        index = max(0, min(self.selected + delta, count - 1))
        self.chosen = None if index == self.current else index

    def now(self) -> Optional[float]:
        """Wall time for a live run's clock; None in a replay (its clock is the log's)."""
        return time.time() if self.mode == "watch" else None
