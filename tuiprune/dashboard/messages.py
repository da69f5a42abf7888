"""The messages the dashboard's worker threads send to the App, in one place (as in
Textualize's ``toolong``). ``post_message`` is thread-safe; the App handles them on its event
loop."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from textual.message import Message

from engine.logread import Chunk


@dataclass
class ChunkRead(Message, bubble=False):
    """Events read from the log. The reader thread waits on ``done`` (set once the chunk is
    applied), so a long log never piles up in memory."""

    chunk: Chunk
    done: threading.Event


@dataclass
class ReaderFailed(Message, bubble=False):
    """The log reader (tailer or replay player) stopped on an exception."""

    reader: str  # "log reader" | "replay" | "run lister" | "log reader of run A"
    error: BaseException


@dataclass
class RunChunkRead(ChunkRead, bubble=False):
    """Events read from the log of compared run number ``run`` (the compare screen)."""

    run: int = 0


@dataclass
class RunsListed(Message, bubble=False):
    """The run browser's lister read the directory and the rows changed (``entries``, a list
    of ``tuiprune.dashboard.browser.entries.Entry``), or ``problem`` says why it cannot."""

    entries: list
    problem: str
