"""Starting one run across several processes with PyTorch's own launcher, ``torchrun``
(``python -m torch.distributed.run``), for ``tuiprune run --nproc-per-node N`` and
``tuiprune watch`` with ``run.nproc_per_node = N`` (torch-free until the launch).

The launcher makes the run directory first (so every rank, and the user, knows it), starts
``torchrun --standalone --nproc-per-node N -m tuiprune run RUN_DIR/config.toml --run-dir
RUN_DIR`` (or ``--resume RUN_DIR``), passes SIGINT/SIGTERM on to it (torchrun passes them to
every rank) and exits the way the run ended in its log: 0 completed, 1 failed, 3 stopped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from engine.errors import EXIT_CODES
from engine.rundir import CONFIG_FILE, EVENTS_FILE

def under_torchrun() -> bool:
    """This process is one rank of a torchrun launch."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def command(nproc: int, run_dir: Path, resume: bool, overrides: Sequence[str] = ()) -> List[str]:
    """The torchrun command line; a resume passes its ``--set`` overrides on to every rank
    (a fresh run's are already in the ``config.toml`` the launcher wrote)."""
    what = ([*(f"--set={o}" for o in overrides), "--resume", str(run_dir)] if resume
            else [str(run_dir / CONFIG_FILE), "--run-dir", str(run_dir)])
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={nproc}", "-m", "tuiprune", "run", *what]


def launch(nproc: int, run_dir: Path, resume: bool, overrides: Sequence[str] = ()) -> int:
    """Run ``run_dir`` with ``nproc`` processes under torchrun, in the foreground."""
    proc = subprocess.Popen(command(nproc, run_dir, resume, overrides),
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))

    def forward(signum, _frame):
        try:
            proc.send_signal(signum)
        except OSError:
            pass

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = proc.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return exit_code(run_dir, code)


def exit_code(run_dir: Path, fallback: int) -> int:
    """How the run ended according to its log's last ``run_ended`` after the launch; the
    launcher's own exit status when the log has none (a rank died without a word)."""
    status = last_status(run_dir / EVENTS_FILE)
    return EXIT_CODES.get(status, 1 if fallback else 0) if status else (fallback or 1)


def last_status(log: Path) -> Optional[str]:
    """The status of the last event of the log when it is a ``run_ended``."""
    from engine.logread import tail_events

    if not log.exists():
        return None
    events = tail_events(log, max_bytes=64 * 1024)
    last = events[-1] if events else None
    return last["status"] if last is not None and last["event"] == "run_ended" else None
