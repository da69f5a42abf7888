"""A real terminal for end-to-end tests: a private tmux server, read with ``capture-pane``."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from helpers.dash import ROOT

# tuiprune of the active environment, with this checkout first on the path (the terminal
# inherits PYTHONPATH): no hard-coded virtual-environment path.
TUIPRUNE = f"{shlex.quote(sys.executable)} -m tuiprune"


class Tmux:
    """A private tmux server (own socket) with one detached session of a fixed size."""

    def __init__(self, tmp_path: Path):
        self.socket = f"tuiprune-test-{os.getpid()}-{time.monotonic_ns()}"
        self.exit_file = tmp_path / "exit-status"

    def tmux(self, *args) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True, timeout=20).stdout

    def start(self, command: str, size=(100, 30), env: dict = None) -> None:
        exports = "".join(f"export {k}={shlex.quote(v)}; " for k, v in (env or {}).items())
        script = f"{exports}cd {shlex.quote(str(ROOT))}; {command}; echo $? > {self.exit_file}"
        subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", "new-session", "-d",
                        "-s", "t", "-x", str(size[0]), "-y", str(size[1]),
                        "sh", "-c", script + "; sleep 30"], check=True, timeout=20)

    def screen(self, joined: bool = False) -> str:
        """The visible lines (``joined``: lines the terminal wrapped are joined)."""
        return self.tmux("capture-pane", "-p", *(["-J"] if joined else []), "-t", "t")

    def pane_title(self) -> str:
        """The pane's title (what an OSC 0/2 escape sequence would set)."""
        return self.tmux("display-message", "-p", "-t", "t", "#{pane_title}").strip()

    def wait_screen(self, predicate, timeout=20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.screen()
            if predicate(text):
                return text
            time.sleep(0.1)
        raise AssertionError("screen never matched; last screen:\n" + self.screen())

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "t", *keys)

    def wait_exit(self, timeout=10.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.exit_file.exists() and self.exit_file.read_text().strip():
                return int(self.exit_file.read_text())
            time.sleep(0.1)
        raise AssertionError("the dashboard did not exit; screen:\n" + self.screen())

    def close(self) -> None:
        self.tmux("kill-server")
