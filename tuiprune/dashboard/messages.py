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

    reader: str  # "log reader" | "replay"
    error: BaseException
