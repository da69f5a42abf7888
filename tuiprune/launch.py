"""Starting the engine as a detached background process for ``tuiprune watch`` (torch-free).
With ``run.nproc_per_node`` > 1 that process is the torchrun launcher (``tuiprune.torchrun``)
and rank 0 takes over the pid file once it runs.

The engine runs in its own session (``setsid``), with stdin from /dev/null and stdout/stderr
appended to ``RUN_DIR/engine.log``, so an SSH hang-up or quitting the dashboard does not stop
it. The dashboard that started it is its parent while both live: a daemon thread waits for it,
so an engine that ends while the dashboard is open is reaped at once instead of lingering as
a zombie (``/proc`` and the dashboard's liveness check then both see it gone). Once the
dashboard quits, the engine is re-parented to init, which reaps it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Mapping, Optional, Sequence

from engine.config import check_output_dir, dumps, load_config
from engine.ranks import check_batch
from engine.pidfile import write_pidfile
from engine.rundir import CONFIG_FILE, ENGINE_LOG, new_run_dir, newest_run as _newest

DEFAULT_OUTPUT_DIR = Path("runs")


def start_detached(config_path: Path, overrides: Sequence[str]) -> Path:
    """Validate the config, create the run directory, start the engine in the background and
    return the run directory (its ``events.jsonl`` appears within moments)."""
    cfg = load_config(config_path, list(overrides))
    check_output_dir(cfg)
    check_batch(cfg["data"]["batch_size"], cfg["run"]["nproc_per_node"])
    run_dir = new_run_dir(cfg)
    run_dir.mkdir(parents=True)
    (run_dir / CONFIG_FILE).write_text(dumps(cfg))
    proc = spawn_detached(["run", str(run_dir / CONFIG_FILE), "--run-dir", str(run_dir)],
                          run_dir / ENGINE_LOG)
    write_pidfile(run_dir, proc.pid)
    reap_when_done(proc)
    return run_dir


def spawn_detached(args: Sequence[str], log_path: Path,
                   env: Optional[Mapping[str, str]] = None) -> subprocess.Popen:
    """``python -m tuiprune ARGS`` in its own session (an SSH hang-up does not reach it),
    stdin from /dev/null, stdout and stderr appended to ``log_path``, unbuffered; ``env``
    (default: ours) is its environment."""
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "tuiprune", *args],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True,
                                env=dict(os.environ if env is None else env,
                                         PYTHONUNBUFFERED="1"))


def reap_when_done(proc: subprocess.Popen) -> threading.Thread:
    """Wait for ``proc`` in a daemon thread, so it leaves no zombie when it ends first."""
    waiter = threading.Thread(target=proc.wait, name=f"tuiprune-reap-{proc.pid}", daemon=True)
    waiter.start()
    return waiter


def newest_run(output_dir: Optional[Path] = None) -> Optional[Path]:
    """The newest run under ``output_dir`` (default ``runs`` in the current directory)."""
    return _newest(Path(output_dir) if output_dir is not None else DEFAULT_OUTPUT_DIR)
