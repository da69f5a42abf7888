"""Is the engine of a run still there? And what did it last print? (no Textual, no torch)"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from engine.pidfile import PID_FILE, engine_alive, read_pidfile


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
