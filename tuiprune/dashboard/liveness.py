"""Is the engine of a run still there? (no Textual, no torch)

:class:`EngineWatch` turns what the run directory says into synthetic events for the reducer
(``engine_lost``, or a note when the engine runs on another host), so the view model derives
"engine lost" like everything else it shows, in a watch and in a replay alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from engine.pidfile import engine_alive, read_pidfile
from engine.rundir import ENGINE_LOG, PID_FILE
from tuiprune.dashboard.reducer import ENGINE_LOST, Event, synthetic
from tuiprune.dashboard.viewmodel import RunView

REMOTE_NOTE = ("the engine runs on another host: this dashboard cannot tell whether it is "
               "alive")


def engine_state(run_dir: Path) -> Optional[bool]:
    """True: alive; False: gone (or never recorded); None: it runs on another host."""
    alive = engine_alive(run_dir)
    if alive is None and read_pidfile(run_dir) is None:
        return False
    return alive


def gone_reason(run_dir: Path) -> str:
    info = read_pidfile(run_dir)
    if info is None:
        return (f"engine lost: no {PID_FILE} in {run_dir} and the log has no run_ended "
                "(the engine never started, or died without a word)")
    return (f"engine lost: process {info['pid']} is gone and the log has no run_ended "
            "(crash, kill -9 or out of memory?)")


def tail_lines(path: Path, n: int = 15, max_bytes: int = 64 * 1024) -> List[str]:
    """The last ``n`` lines of a text file; [] when it cannot be read."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    if size > max_bytes and lines:
        lines = lines[1:]  # the first one is probably cut
    return [line.rstrip() for line in lines[-n:]]


def lost_event(run_dir: Path, at: Optional[float]) -> Event:
    """The synthetic ``engine_lost`` event of ``run_dir``: why, and the end of engine.log."""
    return synthetic(ENGINE_LOST, at, reason=gone_reason(run_dir),
                     engine_log=tail_lines(Path(run_dir) / ENGINE_LOG))


class EngineWatch:
    """Decides, one look at a time, whether the engine of ``run_dir`` is lost.

    A look counts only once the reader has caught up with the log: an engine that wrote
    ``run_ended`` and exited is not lost. When the engine is first seen gone, the reader gets
    one more look to reach the very end (``ask_reader_to_finish``) before it is declared lost.
    """

    def __init__(self, run_dir: Path, log_path: Path) -> None:
        self.run_dir, self.log_path = Path(run_dir), Path(log_path)
        self._dead_size: Optional[int] = None
        self._remote_noted = False

    def look(self, view: RunView, caught_up: bool, consumed: Optional[int]) -> Optional[Event]:
        """A synthetic event for the reducer, or None. ``consumed``: bytes of the log the
        reader has delivered (None when the reader cannot tell, e.g. a replay)."""
        if view.ended is not None or view.finished:
            self._dead_size = None
            return None
        exists = self.log_path.exists()
        if exists and not caught_up:
            return None
        alive = engine_state(self.run_dir)
        if alive is None:
            if self._remote_noted:
                return None
            self._remote_noted = True
            return synthetic("note", view.last_time, level="warning", text=REMOTE_NOTE)
        if alive:
            self._dead_size = None
            return None
        size = self.log_path.stat().st_size if exists else 0
        if self._dead_size != size:
            self._dead_size = size
            return None
        if consumed is not None and consumed < size:
            return None
        return lost_event(self.run_dir, view.last_time)

    @property
    def waiting_for_reader(self) -> bool:
        """The engine was just seen gone: the reader should finish and look again soon."""
        return self._dead_size is not None
