"""The base of the dashboard's widgets: render text lines from the context's view model."""

from __future__ import annotations

from typing import Hashable, List, Optional

from rich.text import Text
from textual.widget import Widget

from tuiprune.dashboard.context import Context


def join(lines: List[Text]) -> Text:
    return Text("\n").join(lines)


class ViewWidget(Widget):
    """Draws ``lines(width, height)``; :meth:`sync` is called after the view changed."""

    def __init__(self, ctx: Context, **kwargs) -> None:
        super().__init__(**kwargs)
        self.ctx = ctx
        self._drawn_key: Optional[Hashable] = None

    def change_key(self) -> Optional[Hashable]:
        """A value that changes whenever what this widget draws may change; None: always
        redraw. Lets costly widgets skip redraws while the run only moves batches along."""
        return None

    def sync(self) -> None:
        """Update titles and schedule a redraw (when something this widget shows changed)."""
        key = self.change_key()
        if key is not None and key == self._drawn_key:
            return
        self._drawn_key = key
        self.refresh(layout=self.styles.height is not None and self.styles.height.is_auto)

    def lines(self, width: int, height: int) -> List[Text]:
        raise NotImplementedError

    def render(self) -> Text:
        size = self.content_size
        return join(self.lines(max(1, size.width), max(1, size.height)))


def clip(text: Text, width: int, ellipsis: str) -> Text:
    """``text`` cut to ``width`` cells, ending in ``ellipsis`` when cut."""
    if text.cell_len <= width:
        return text
    text = text.copy()
    text.truncate(max(0, width - len(ellipsis)))
    text.append(ellipsis[:width])
    return text


def spread(left: Text, right: Text, width: int, ellipsis: str) -> Text:
    """``left`` and ``right`` on one line of ``width`` cells; ``left`` gives way first."""
    if width - right.cell_len - 1 < 8:
        right = Text("")
    left = clip(left, max(0, width - right.cell_len - (1 if right.cell_len else 0)), ellipsis)
    line = Text(no_wrap=True, overflow="crop")
    line.append_text(left)
    line.append(" " * max(0, width - left.cell_len - right.cell_len))
    line.append_text(right)
    return line


def set_title(widget: Widget, title: str, ellipsis: str) -> None:
    """Set a border title cut to the widget's width (Textual would cut it with '…')."""
    room = widget.outer_size.width - 6
    if 0 < room < len(title):
        title = title[:max(0, room - len(ellipsis))] + ellipsis
    widget.border_title = title
