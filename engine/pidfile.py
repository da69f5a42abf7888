"""``RUN_DIR/engine.pid``: which process runs a run, and whether it is still alive (torch-free).

The file holds JSON ``{"pid", "host", "proc_start"}``. ``proc_start`` is the process start time
from ``/proc/<pid>/stat`` (Linux), so a recycled pid is not mistaken for the engine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Optional

from engine.rundir import PID_FILE, STOP_FILE


def _stat(pid: int) -> Optional[list]:
    """Fields 3… of ``/proc/<pid>/stat`` (state, ppid, …), or None when unreadable. The
    command name (field 2) may contain spaces, so split after the last ')'."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _proc_start(pid: int) -> Optional[str]:
    stat = _stat(pid)
    return stat[19] if stat else None  # field 22: starttime


def write_pidfile(run_dir: Path, pid: Optional[int] = None) -> None:
    """Record ``pid`` (default: this process) as the engine of ``run_dir``."""
    pid = os.getpid() if pid is None else pid
    info = {"pid": pid, "host": socket.gethostname(), "proc_start": _proc_start(pid)}
    tmp = Path(run_dir) / (PID_FILE + ".tmp")
    tmp.write_text(json.dumps(info) + "\n")
    os.replace(tmp, Path(run_dir) / PID_FILE)


def read_pidfile(run_dir: Path) -> Optional[dict]:
    """The recorded engine process, or None when there is no readable pid file."""
    try:
        info = json.loads((Path(run_dir) / PID_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and isinstance(info.get("pid"), int) else None


def engine_alive(run_dir: Path) -> Optional[bool]:
    """True/False when it can be told on this host; None when the engine runs elsewhere or no
    pid was recorded."""
    info = read_pidfile(run_dir)
    if info is None or info.get("host") not in (None, socket.gethostname()):
        return None
    pid = info["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    stat = _stat(pid)
    if stat is None:
        return False if Path("/proc").is_dir() else True
    if stat[0] == "Z":  # exited, not yet reaped by its parent
        return False
    return info.get("proc_start") in (None, stat[19])


def request_stop(run_dir: Path) -> bool:
    """Ask the engine of ``run_dir`` to stop gracefully: it finishes the batch, checkpoints
    and writes ``run_ended`` status ``stopped``. A local engine gets SIGTERM; an engine on
    another host (sharing the run directory over a network filesystem) finds a stop request
    file, which it polls about once a second. False when no engine is running here and none
    is recorded elsewhere."""
    alive = engine_alive(run_dir)
    if alive:
        try:
            os.kill(read_pidfile(run_dir)["pid"], signal.SIGTERM)
            return True
        except OSError:
            return False
    if alive is None and read_pidfile(run_dir) is not None:
        write_stop_request(run_dir)
        return True
    return False


def write_stop_request(run_dir: Path) -> None:
    """Leave ``RUN_DIR/stop.request`` saying who asks (host, pid, time)."""
    info = {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}
    tmp = Path(run_dir) / (STOP_FILE + ".tmp")
    tmp.write_text(json.dumps(info) + "\n")
    os.replace(tmp, Path(run_dir) / STOP_FILE)


def read_stop_request(run_dir: Path) -> Optional[str]:
    """Who asked the run to stop through a stop request file ("stop request from HOST (pid
    N)"), or None when there is none."""
    path = Path(run_dir) / STOP_FILE
    if not path.exists():
        return None
    try:
        info = json.loads(path.read_text())
        return f"stop request from {str(info['host'])[:100]} (pid {int(info['pid'])})"
    except (OSError, ValueError, KeyError, TypeError):
        return "stop request (unreadable request file)"


def clear_stop_request(run_dir: Path) -> None:
    try:
        (Path(run_dir) / STOP_FILE).unlink()
    except OSError:
        pass


def remove_pidfile(run_dir: Path) -> None:
    """Forget the engine of ``run_dir`` if it is this process (an orderly exit)."""
    info = read_pidfile(run_dir)
    if info is not None and info["pid"] == os.getpid():
        try:
            (Path(run_dir) / PID_FILE).unlink()
        except OSError:
            pass
