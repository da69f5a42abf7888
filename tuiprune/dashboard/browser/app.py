"""The App of ``tuiprune watch [DIR]``: the run browser, with each run's dashboard and the
compare screen pushed over it (``--compare``: the compare screen of a sweep's members first)."""

from __future__ import annotations

from pathlib import Path

from tuiprune.dashboard.app import CSS_FILE, TuipruneApp
from tuiprune.dashboard.browser.entries import entries_of
from tuiprune.dashboard.browser.screen import BrowserScreen
from tuiprune.dashboard.glyphs import glyphs

BROWSER_CSS = Path(__file__).with_name("browser.tcss")


class BrowserApp(TuipruneApp):
    CSS_PATH = [CSS_FILE, BROWSER_CSS]

    def __init__(self, directory: Path, ascii_only: bool = False, compare: bool = False) -> None:
        super().__init__(ascii_only)
        self.browser = BrowserScreen(Path(directory), glyphs(ascii_only))
        self.compare_first = compare

    def get_default_screen(self) -> BrowserScreen:
        return self.browser

    def on_mount(self) -> None:
        super().on_mount()
        if self.compare_first:
            from tuiprune.dashboard.compare.screen import CompareScreen, compared_runs

            directory = self.browser.state.directory
            entries, _ = entries_of(directory)
            self.push_screen(CompareScreen(compared_runs(entries), self.browser.state.glyphs,
                                           directory))
