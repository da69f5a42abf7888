"""Markdown building blocks of the report, and the one boundary where data becomes Markdown.

Every string that came from a log, a config, a path or an exception reaches the document
through :func:`text` (or a table cell, which :func:`table` escapes itself): control characters
become visible escapes (``tuiprune.format.printable``), newlines become ``\\n``, and the ASCII
punctuation that Markdown gives a meaning (links, HTML, entities, code spans, emphasis, table
pipes) is backslash-escaped. So a crafted run name or message can neither carry terminal escape
sequences into the file or the terminal, nor break a table, nor become a link.
"""

from __future__ import annotations

import re
from typing import Any, List, Optional, Sequence

from tuiprune.format import NO_VALUE, printable

# ``&`` too: a character reference such as ``&#x1b;`` would otherwise decode to a control byte
_SPECIAL = re.compile(r"([\\`*_\[\]<>|&~])")


class Md(str):
    """Text that already is Markdown (built by the report, not taken from data)."""


def text(value: Any) -> str:
    """``value`` as Markdown text that shows exactly its characters, on one line (None:
    the "no value" marker)."""
    if isinstance(value, Md):
        return value
    if value is None:
        return NO_VALUE
    return _SPECIAL.sub(r"\\\1", printable(value, newlines=False))


def bold(value: Any) -> Md:
    return Md(f"**{text(value)}**")


def table(header: Sequence[str], rows: Sequence[Sequence[Any]],
          align: Optional[str] = None) -> List[str]:
    """A Markdown table; every cell that is not :class:`Md` is escaped with :func:`text`.
    ``align``: one letter per column (``l``/``r``), default left then right."""
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else ":---" for a in align]

    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(text(c) for c in cells) + " |"

    return [line(header), "| " + " | ".join(sep) + " |"] + [line(r) for r in rows]


def bullets(items: Sequence[str]) -> List[str]:
    """``- item`` lines (items are Markdown already)."""
    return [f"- {item}" for item in items]


def heading(level: int, title: str) -> List[str]:
    """A heading line and the blank line after it (``title`` is Markdown already)."""
    return ["#" * level + " " + title, ""]
