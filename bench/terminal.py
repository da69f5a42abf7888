"""A real terminal for the benchmarks: ``tuiprune ARGS`` in a private tmux server (its own
socket) of a fixed size, read with ``capture-pane``; and a process's CPU share from
``/proc/<pid>/stat`` (user + system time over wall time)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


class Terminal:
    """``python -m tuiprune ARGS`` from ``root`` (this checkout unless told) in a detached
    tmux session of ``size``; ``pid`` is its process, ``started`` its ``time.monotonic()``.
    Use as a context manager, or call :meth:`close`."""

    def __init__(self, args: List[str], size: Tuple[int, int] = (120, 40),
                 root: Optional[Path] = None) -> None:
        root = Path(root or ROOT)
        self.socket = f"tuiprune-bench-{os.getpid()}-{time.monotonic_ns()}"
        command = (f"cd {shlex.quote(str(root))} && exec env PYTHONPATH="
                   f"{shlex.quote(str(root))} {shlex.quote(sys.executable)} -m tuiprune "
                   + " ".join(shlex.quote(a) for a in args))
        self.started = time.monotonic()
        self.tmux("-f", "/dev/null", "new-session", "-d", "-s", "b", "-x", str(size[0]),
                  "-y", str(size[1]), "sh", "-c", command)
        self.pid = int(self.tmux("display-message", "-p", "-t", "b", "#{pane_pid}"))

    def __enter__(self) -> "Terminal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True, timeout=20).stdout.strip()

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "b")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "b", *keys)

    def seen(self, shows: Callable[[str], bool], timeout: float = 60,
             since: Optional[float] = None) -> Optional[float]:
        """Seconds from ``since`` (default: the start) until the screen ``shows`` what is
        asked; None when it never does within ``timeout`` seconds of ``since``."""
        since = self.started if since is None else since
        while time.monotonic() - since < timeout:
            if shows(self.screen()):
                return time.monotonic() - since
            time.sleep(0.01)
        return None

    def wait_screen(self, shows: Callable[[str], bool], timeout: float = 60,
                    since: Optional[float] = None) -> float:
        """:meth:`seen`, with a RuntimeError (and the last screen) when it never shows."""
        seconds = self.seen(shows, timeout, since)
        if seconds is None:
            raise RuntimeError(f"the screen never showed what was awaited:\n{self.screen()}")
        return seconds

    def close(self) -> None:
        self.keys("q")
        time.sleep(0.5)
        self.tmux("kill-server")


def cpu_seconds(pid: int) -> Optional[float]:
    """User + system CPU seconds of process ``pid`` so far (None when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def cpu_pct(pid: int, seconds: float, work: Callable[[], None] = lambda: time.sleep(0.1)
            ) -> float:
    """The CPU share of ``pid`` (% of one core) over ``seconds`` while ``work()`` is called
    over and over (by default: sleeping)."""
    before, start = cpu_seconds(pid), time.monotonic()
    while time.monotonic() - start < seconds:
        work()
    return 100 * (cpu_seconds(pid) - before) / (time.monotonic() - start)
