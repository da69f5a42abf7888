"""What a resume needs to know of an existing log, in one streaming pass (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from engine.logread import iter_events
from engine.schema import DURABLE, durable_key


@dataclass
class LogScan:
    """The next ``seq``, how the last process ended, which event kinds and which summary
    events (``DURABLE``) the log holds, and its last ``state_ended`` (a long run's log has
    millions of lines: nothing else is kept)."""

    next_seq: int = 0
    last_status: Optional[str] = None
    kinds: set = field(default_factory=set)
    durable: set = field(default_factory=set)
    last_state_ended: Optional[dict] = None

    @classmethod
    def read(cls, path: Path) -> "LogScan":
        scan = cls()
        for ev in iter_events(path):
            scan.note(ev)
        return scan

    def note(self, ev: dict) -> None:
        kind = ev["event"]
        self.next_seq = max(self.next_seq, ev["seq"] + 1)
        self.kinds.add(kind)
        if kind in DURABLE:
            self.durable.add(durable_key(ev))
        if kind == "run_ended":
            self.last_status = ev["status"]
        elif kind == "state_ended":
            self.last_state_ended = ev
