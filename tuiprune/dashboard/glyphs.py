"""The characters the dashboard draws with: a Unicode set and a plain-ASCII set (``--ascii``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple


@dataclass(frozen=True)
class Glyphs:
    ascii: bool
    sep: str
    ellipsis: str
    bar_full: str
    bar_empty: str
    bar_partials: Tuple[str, ...]  # fills of 1/8 .. 7/8 of a cell ('' when not drawn)
    spark: str  # lowest to highest
    braille: bool  # line charts in braille dots (2x4 per cell) or one mark per cell
    train_mark: str
    val_mark: str
    line_mark: str
    step_mark: str  # a pruning step in the accuracy chart
    y_tick: str
    y_axis: str
    x_axis: str
    corner: str
    left: str
    right: str
    times: str
    state_marks: Tuple[Tuple[str, str], ...]  # (state status, mark)

    def state_mark(self, status: str) -> str:
        return dict(self.state_marks).get(status, "?")

    def text(self, value: str) -> str:
        """Text from the log (messages, names) as this glyph set can show it."""
        if not self.ascii or value.isascii():
            return value
        return value.translate(_TO_ASCII).encode("ascii", "replace").decode("ascii")


UNICODE = Glyphs(
    ascii=False, sep=" · ", ellipsis="…", bar_full="█", bar_empty="░",
    bar_partials=("▏", "▎", "▍", "▌", "▋", "▊", "▉"), spark="▁▂▃▄▅▆▇█", braille=True,
    train_mark="•", val_mark="•", line_mark="•", step_mark="┊", y_tick="┤", y_axis="│", x_axis="─",
    corner="└", left="←", right="→", times="×",
    state_marks=(("pending", "·"), ("running", "●"), ("done", "✓"), ("failed", "✗"),
                 ("stopped", "■"), ("engine lost", "✗")),
)

ASCII = Glyphs(
    ascii=True, sep=" | ", ellipsis="...", bar_full="#", bar_empty=".",
    bar_partials=("", "", "", "", "", "", ""), spark="_.-=+*#", braille=False,
    train_mark=".", val_mark="*", line_mark="*", step_mark=":", y_tick="+", y_axis="|", x_axis="-",
    corner="+", left="<-", right="->", times="x",
    state_marks=(("pending", "."), ("running", "*"), ("done", "+"), ("failed", "x"),
                 ("stopped", "#"), ("engine lost", "x")),
)


_TO_ASCII = str.maketrans({"λ": "lambda", "·": "*", "×": "x", "—": "-", "–": "-", "…": "...",
                           "→": "->", "←": "<-", "≥": ">=", "≤": "<=", "‘": "'", "’": "'",
                           "“": '"', "”": '"', "µ": "u"})


def glyphs(ascii_only: bool) -> Glyphs:
    return ASCII if ascii_only else UNICODE
