"""``RUN_DIR/engine.pid``: which process runs a run, and whether it is still alive (torch-free).

The file holds JSON ``{"pid", "host", "proc_start"}``. ``proc_start`` is the process start time
from ``/proc/<pid>/stat`` (Linux), so a recycled pid is not mistaken for the engine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path
from typing import Optional

from engine.rundir import PID_FILE


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
    """Ask the engine of ``run_dir`` to stop gracefully (SIGTERM: it finishes the batch,
    checkpoints and writes ``run_ended`` status ``stopped``). False when it is not running."""
    if not engine_alive(run_dir):
        return False
    try:
        os.kill(read_pidfile(run_dir)["pid"], signal.SIGTERM)
    except OSError:
        return False
    return True


def remove_pidfile(run_dir: Path) -> None:
    """Forget the engine of ``run_dir`` if it is this process (an orderly exit)."""
    info = read_pidfile(run_dir)
    if info is not None and info["pid"] == os.getpid():
        try:
            (Path(run_dir) / PID_FILE).unlink()
        except OSError:
            pass
