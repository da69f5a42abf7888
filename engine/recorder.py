"""What a run writes, in one place: the run directory's lock, the event log, the pid file,
text files and checkpoint commits. In a distributed run only rank 0 writes; the recorder of
every other rank takes no lock and writes nothing, so the run loop reads the same on every
rank."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Callable, List, Optional

from engine import checkpoint as ckpt
from engine import rundir
from engine.errors import WriteFailed
from engine.events import EventLog
from engine.lock import RunLock
from engine.pidfile import remove_pidfile, write_pidfile

HEARTBEAT_SECONDS = 5.0  # a heartbeat after this long without an event (remote liveness)


class RunRecorder:
    """Writes of the run in ``run_dir``; ``writer`` is False on ranks other than 0."""

    def __init__(self, run_dir: Path, listeners: List[Callable[[dict], None]],
                 writer: bool = True) -> None:
        self.run_dir, self.listeners, self.writer = Path(run_dir), listeners, writer
        self.log: Optional[EventLog] = None
        self.lock = RunLock(self.run_dir)
        self.opened = False  # the run has begun to record (on every rank)

    def take_lock(self) -> None:
        if self.writer and not self.lock.held:
            self.lock.acquire()

    def open(self, seq: int) -> None:
        """Lock the run directory (if not yet), open its log and record this process."""
        self.opened = True
        if not self.writer:
            return
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WriteFailed(self.run_dir, exc) from None
        self.take_lock()
        self.log = EventLog(self.run_dir / rundir.EVENTS_FILE, seq=seq,
                            listeners=self.listeners, heartbeat_seconds=HEARTBEAT_SECONDS)
        write_pidfile(self.run_dir)

    def busy(self, state: int, phase: str) -> None:
        """What the run does now, for the heartbeats written while nothing else is."""
        if self.log is not None:
            self.log.heartbeat_fields = {"state": state, "phase": phase}

    def emit(self, event: str, **fields) -> dict:
        if self.log is None:
            return {"event": event, **fields}
        return self.log.emit(event, **fields)

    def commit(self, ck: dict, name: str, critical=nullcontext) -> str:
        """Write checkpoint ``ck`` as ``checkpoints/<name>`` (refusing non-finite weights);
        returns its path relative to the run directory."""
        if self.writer:
            with critical():
                ckpt.commit(ck, rundir.checkpoint_path(self.run_dir, name))
        return rundir.relative(name)

    def write_text(self, name: str, text: str) -> None:
        if not self.writer:
            return
        path = self.run_dir / name
        try:
            path.write_text(text)
        except OSError as exc:
            raise WriteFailed(path, exc) from None

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
            remove_pidfile(self.run_dir)
            self.log = None
        self.lock.release()
