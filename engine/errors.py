"""Exceptions that end a run with one clear line instead of a traceback (torch-free)."""

from __future__ import annotations

import errno
import os
from pathlib import Path


# How a run ends, as the exit status of `tuiprune run` (and of a sweep, a torchrun launch):
EXIT_COMPLETED, EXIT_FAILED, EXIT_STOPPED = 0, 1, 3
EXIT_CODES = {"completed": EXIT_COMPLETED, "failed": EXIT_FAILED, "stopped": EXIT_STOPPED}


class UserError(Exception):
    """Bad input from the user: the CLI prints the message alone (no traceback) and exits non-zero.

    The message names the problem and how to fix it.
    """


class WriteFailed(Exception):
    """Writing a file of the run failed in the operating system (disk full, quota, read-only
    or vanished filesystem). The message names the file and the filesystem."""

    def __init__(self, path: Path, error: OSError) -> None:
        self.path, self.error = Path(path), error
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            what = f"no space left on {mount_point(self.path)}"
        else:
            what = f"{error.strerror or error} on {mount_point(self.path)}"
        super().__init__(f"{what} while writing {self.path}")

    @property
    def disk_full(self) -> bool:
        return self.error.errno in (errno.ENOSPC, errno.EDQUOT)


def mount_point(path: Path) -> Path:
    """The mount point of the filesystem that holds ``path`` (or its nearest existing
    parent)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        dev = path.stat().st_dev
        while path != path.parent and path.parent.stat().st_dev == dev:
            path = path.parent
    except OSError:
        pass
    return path
