"""Starting the engine as a detached background process for ``tuiprune watch`` (torch-free).

The engine runs in its own session (``setsid``), with stdin from /dev/null and stdout/stderr
appended to ``RUN_DIR/engine.log``, so an SSH hang-up or quitting the dashboard does not stop it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

from engine.config import dumps, load_config
from engine.pidfile import write_pidfile
from engine.rundir import CONFIG_FILE, ENGINE_LOG, new_run_dir, newest_run as _newest

DEFAULT_OUTPUT_DIR = Path("runs")


def start_detached(config_path: Path, overrides: List[str]) -> Path:
    """Validate the config, create the run directory, start the engine in the background and
    return the run directory (its ``events.jsonl`` appears within moments)."""
    cfg = load_config(config_path, overrides)
    run_dir = new_run_dir(cfg)
    run_dir.mkdir(parents=True)
    (run_dir / CONFIG_FILE).write_text(dumps(cfg))
    cmd = [sys.executable, "-m", "tuiprune", "run", str(run_dir / CONFIG_FILE),
           "--run-dir", str(run_dir)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(run_dir / ENGINE_LOG, "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                close_fds=True, env=env)
    write_pidfile(run_dir, proc.pid)
    return run_dir


def newest_run(output_dir: Optional[Path] = None) -> Optional[Path]:
    """The newest run under ``output_dir`` (default ``runs`` in the current directory)."""
    return _newest(Path(output_dir) if output_dir is not None else DEFAULT_OUTPUT_DIR)
