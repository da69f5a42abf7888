"""Keyboard scrolling for the dashboard's panes, without the left/right/home/end keys that
the dashboard uses for states and replay."""

from textual.binding import Binding

SCROLL_BINDINGS = [
    Binding("up", "scroll_up", "scroll up", show=False),
    Binding("down", "scroll_down", "scroll down", show=False),
    Binding("pageup", "page_up", "page up", show=False),
    Binding("pagedown", "page_down", "page down", show=False),
]
