"""Is the engine of a run still there? (no Textual, no torch)

:class:`EngineWatch` turns what the run directory says into synthetic events for the reducer
(``engine_lost``; ``engine_remote`` when the pid file names another host), so the view model
derives "engine lost" like everything else it shows, in a watch and in a replay alike.

A local engine is judged by its process. One on another host (the run directory on a shared
filesystem) cannot be: it is judged by the log's heartbeat instead, the time of its last event
(the engine writes a ``heartbeat`` event when nothing else was written for a few seconds).
:func:`news_age` and :func:`news_level` say how long the log has been silent and how worrying
that is; the screen says "no news for 75s", never a false "engine lost". Hosts are assumed to
keep their clocks in step (NTP), as ``tuiprune ls`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from engine.pidfile import engine_alive, read_pidfile
from engine.rundir import ENGINE_LOG, PID_FILE
from tuiprune.dashboard.reducer import ENGINE_LOST, ENGINE_REMOTE, Event, synthetic
from tuiprune.dashboard.viewmodel import RunView

QUIET_S = 15.0  # a remote engine's log silent this long: "no news for Ns"
LATE_S = 60.0  # ... this long: said louder
SILENT_S = 300.0  # ... this long: alarming (but never "engine lost": it may be evaluating)
QUIET, LATE, SILENT = "quiet", "late", "silent"


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
        self._remote = ""  # the other host the engine runs on, as last told to the reducer

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
        remote = str((read_pidfile(self.run_dir) or {}).get("host")) if alive is None else ""
        if remote != self._remote:  # judged by the log's heartbeat from now on (or not)
            self._remote = remote
            return synthetic(ENGINE_REMOTE, view.last_time, host=remote)
        if alive is None:
            return None
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


def news_age(view: RunView, now: Optional[float]) -> Optional[float]:
    """Seconds since the log's last event (heartbeats included) at wall time ``now``, for a
    run whose engine is on another host and has not ended; None otherwise (a local engine is
    judged by its process; ``now`` None: the screen shows the log's past, a replay)."""
    if not view.remote_host or view.finished or now is None or view.last_time is None:
        return None
    return max(0.0, now - view.last_time)


def news_level(age: Optional[float]) -> Optional[str]:
    """How worrying a silence of ``age`` seconds is: None (not worth a word), QUIET, LATE or
    SILENT."""
    if age is None or age < QUIET_S:
        return None
    return QUIET if age < LATE_S else LATE if age < SILENT_S else SILENT
