"""The base of the dashboard's widgets: render text lines from the context's view model, and
redraw only when what they draw may have changed.

Everything a widget draws is a Rich ``Text`` built from strings the reducer made printable;
no widget builds console markup from data (a ``[`` in a run name is just a character).
"""

from __future__ import annotations

import time
from typing import Hashable, List, Optional

from rich.text import Text
from textual.widget import Widget

from tuiprune.dashboard.context import Context


def join(lines: List[Text]) -> Text:
    return Text("\n").join(lines)


class ViewWidget(Widget):
    """Draws ``lines(width, height)`` under the border title ``title()``.

    :meth:`sync` is called whenever the view model may have changed; it redraws only when
    :meth:`change_key` differs from the last drawn one (the reducer's change counters for the
    part of the view this widget shows, and the screen state it depends on). A costly widget
    sets ``MIN_INTERVAL``: while a run streams updates it redraws at most that often, and
    :attr:`due` says when the change it put off should be drawn."""

    MIN_INTERVAL = 0.0

    def __init__(self, ctx: Context, **kwargs) -> None:
        super().__init__(**kwargs)
        self.ctx = ctx
        self._drawn_key: Optional[Hashable] = None
        self._drawn_at = float("-inf")
        self.due: Optional[float] = None  # monotonic time a put-off change is to be drawn
        self.redraws = 0  # how often sync() asked for a redraw (tests, the cost benchmark)

    def change_key(self) -> Hashable:
        """A value that changes whenever what this widget draws may change."""
        raise NotImplementedError

    def title(self) -> Optional[Text]:
        """The border title, or None for a widget without one."""
        return None

    def sync(self, force: bool = False, urgent: bool = False) -> bool:
        """Redraw when something this widget shows changed (``force``: anyway, e.g. after a
        resize; ``urgent``: now, even within ``MIN_INTERVAL``, as after a key press). True
        when a redraw was asked for."""
        key = self.change_key()
        if not force and key == self._drawn_key:
            self.due = None
            return False
        now = time.monotonic()
        if not (force or urgent) and now - self._drawn_at < self.MIN_INTERVAL:
            self.due = self._drawn_at + self.MIN_INTERVAL
            return False
        self._drawn_key, self._drawn_at, self.due = key, now, None
        title = self.title()
        if title is not None:
            set_title(self, title, self.ctx.glyphs.ellipsis)
        self.redraws += 1
        self.refresh(layout=self.styles.height is not None and self.styles.height.is_auto)
        return True

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


def set_title(widget: Widget, title: Text, ellipsis: str) -> None:
    """Set a border title (a ``Text``: never parsed as markup) cut to the widget's width
    (Textual would cut it with '…'); nothing is redrawn when it did not change."""
    room = widget.outer_size.width - 6
    if room > 0:
        title = clip(title, room, ellipsis)
    if getattr(widget, "_shown_title", None) != title:
        widget._shown_title = title
        widget.border_title = title
