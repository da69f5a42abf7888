"""One writer per run directory: an exclusive ``flock`` on ``RUN_DIR/engine.lock`` (torch-free).

``tuiprune run``, ``--resume`` (and every later writer: sweeps, distributed rank 0) take the
lock before they read or write anything of the run; a second writer gets one line naming who
holds it. The kernel drops the lock when its holder exits, however it exits (``kill -9``
included), so a stale lock file never blocks a resume. The file itself stays; its content
(pid, host) only informs the message.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path
from typing import Optional

from engine.errors import UserError, WriteFailed
from engine.rundir import LOCK_FILE


class RunLock:
    """Hold ``run_dir``'s lock from :meth:`acquire` until :meth:`release` (or exit)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: Optional[int] = None

    def acquire(self) -> "RunLock":
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise WriteFailed(self.path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise UserError(f"{self.path.parent} is in use by another tuiprune process "
                            f"({holder}); wait for it to end, or stop it with `tuiprune stop "
                            f"{self.path.parent}`") from None
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, info + b"\n", 0)
        except OSError:
            pass  # the lock holds without its note (disk full): only the message suffers
        self._fd = fd
        return self

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {int(info['pid'])} on host {str(info['host'])[:100]}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"
