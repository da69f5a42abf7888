"""Modal screens: the key help, and the confirmation before stopping a run."""

from __future__ import annotations

from typing import Iterable, Optional

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual import events
from textual.screen import ModalScreen
from textual.widgets import Static

from tuiprune.dashboard.glyphs import Glyphs
from tuiprune.dashboard.keys import Key, keys_for


def key_lines(keys: Iterable[Key], g: Glyphs) -> Text:
    """``  KEY   what it does`` per key."""
    text = Text()
    for k in keys:
        label = k.label_ascii if g.ascii else k.label
        text.append(f"  {label:<16}", style="bold")
        text.append(f"{k.help}\n")
    return text


def help_text(mode: str, g: Glyphs, back: bool = False) -> Text:
    text = Text("Keys\n\n", style="bold")
    text.append_text(key_lines(keys_for(mode, back), g))
    text.append("\nState strip: [index mark best-val sparsity]; the selected state drives the "
                "sparsity and lambda panes.\nAny key closes this help.", style="dim")
    return text


class HelpScreen(ModalScreen[None]):
    """The keys, as ``text`` (default: the run dashboard's in ``mode``); any key closes it."""

    def __init__(self, mode: str, g: Glyphs, back: bool = False,
                 text: Optional[Text] = None) -> None:
        super().__init__()
        self.text = text if text is not None else help_text(mode, g, back)

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box", classes="modal-box"):
            yield Static(self.text, id="help-text")

    def on_key(self, event: events.Key) -> None:
        event.stop()
        self.dismiss()


class ConfirmStop(ModalScreen[bool]):
    """``y`` stops the run; any other key cancels."""

    def __init__(self, run_dir: str) -> None:
        super().__init__()
        self.run_dir = run_dir

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box", classes="modal-box"):
            yield Static(Text.assemble(
                ("Stop the run?\n\n", "bold"),
                f"{self.run_dir}\n\nThe engine finishes the current batch, saves a checkpoint "
                "and stops (resume later with tuiprune run --resume).\n\n",
                ("y", "bold"), " stop    ", ("any other key", "bold"), " cancel"),
                id="confirm-text")

    def on_key(self, event: events.Key) -> None:
        event.stop()
        self.dismiss(event.key == "y")
