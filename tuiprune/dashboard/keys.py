"""Every key of the dashboard, in one table: the App binds from it, help and key bar show it.
The run browser and the compare screen keep their tables beside their screens and use the
same :class:`Key` and helpers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

from textual.binding import Binding

from tuiprune.dashboard.glyphs import Glyphs


@dataclass(frozen=True)
class Key:
    keys: str  # Textual key names, comma-separated
    action: str
    label: str  # as shown (Unicode)
    label_ascii: str
    help: str
    short: str  # in the key bar; "" to leave it out
    replay_only: bool = False
    watch_only: bool = False
    back_only: bool = False  # only in a dashboard opened from the run browser


KEYS: Tuple[Key, ...] = (
    Key("left", "select(-1)", "←", "<-", "previous state", ""),
    Key("right", "select(1)", "→", "->", "next state", ""),
    Key("q", "quit", "q", "q", "quit the dashboard (a live run goes on)", "quit"),
    Key("escape", "back", "Esc", "Esc", "back to the list of runs", "back", back_only=True),
    Key("ctrl+c", "", "ctrl+c", "ctrl+c", "quit, also while typing a filter", ""),
    Key("S", "stop_run", "S", "S", "stop the run (asks y to confirm; the engine checkpoints)",
        "stop", watch_only=True),
    Key("l", "toggle_log", "l", "l", "show or hide the log pane", "log"),
    Key("m", "toggle_system", "m", "m",
        "show or hide the system pane (GPU, CPU, data wait)", ""),
    Key("slash", "filter_log", "/", "/", "filter the log pane (Enter keeps, Esc clears)",
        "filter"),
    Key("space", "toggle_pause", "space", "space", "pause or resume the replay", "pause",
        replay_only=True),
    Key("plus,equals_sign", "speed(1)", "+", "+", "replay faster", "", replay_only=True),
    Key("minus", "speed(-1)", "-", "-", "replay slower", "", replay_only=True),
    Key("end", "jump_to_end", "End", "End", "jump to the end of the replay", "end",
        replay_only=True),
    Key("up,down,pageup,pagedown", "", "↑↓ PgUp PgDn", "Up Dn PgUp PgDn",
        "scroll the focused pane (Tab moves focus)", ""),
    Key("question_mark", "help", "?", "?", "this help", "help"),
)


def keys_for(mode: str, back: bool = False) -> List[Key]:
    """The keys of a dashboard in ``mode``; ``back``: opened from the run browser."""
    return [k for k in KEYS if not (k.replay_only and mode != "replay")
            and not (k.watch_only and mode != "watch") and not (k.back_only and not back)]


def bindings_of(table: Sequence[Key]) -> List[Binding]:
    """The bindings of a screen's key table (keys without an action are only shown)."""
    return [Binding(k.keys, k.action, k.help, show=False) for k in table if k.action]


def bindings() -> List[Binding]:
    """All bindings; the App turns off those of the other mode (``check_action``)."""
    return bindings_of(KEYS)


def bar_of(table: Sequence[Key], g: Glyphs) -> str:
    """One line of a screen's most used keys (those with a ``short`` word)."""
    return "  ".join(f"{k.label_ascii if g.ascii else k.label} {k.short}" for k in table
                     if k.short)


def action_allowed(action: str, mode: str, back: bool = False) -> bool:
    for k in KEYS:
        if k.action.split("(")[0] == action:
            return k in keys_for(mode, back)
    return True


def key_bar(mode: str, g: Glyphs, back: bool = False) -> str:
    """One line of the most used keys."""
    parts = [f"{g.left}/{g.right} state"]
    for k in keys_for(mode, back):
        if k.short:
            parts.append(f"{k.label_ascii if g.ascii else k.label} {k.short}")
    if mode == "replay":
        parts.insert(-1, "+/- speed")
    return "  ".join(parts)
