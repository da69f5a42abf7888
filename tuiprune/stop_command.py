"""``tuiprune stop RUN_DIR``: ask a running engine to checkpoint and stop (torch-free).

A local engine gets SIGTERM; an engine on another host (the run directory on a shared
filesystem) finds ``RUN_DIR/stop.request``, which it polls about once a second."""

from __future__ import annotations

from pathlib import Path

from engine.errors import UserError
from engine.pidfile import engine_alive, read_pidfile, request_stop
from engine.rundir import STOP_FILE, require_run_dir
from tuiprune.format import printable


def stop_main(run_dir: Path) -> int:
    run_dir = require_run_dir(Path(run_dir))
    remote = engine_alive(run_dir) is None and read_pidfile(run_dir) is not None
    if not request_stop(run_dir):
        raise UserError(f"no engine is running {run_dir}: nothing to stop")
    if remote:
        host = printable(read_pidfile(run_dir).get("host"), newlines=False)
        print(f"stop requested through {printable(run_dir / STOP_FILE)}: the engine on "
              f"{host} finishes its batch, checkpoints and ends with status stopped")
    else:
        print(f"stop requested: the engine of {printable(run_dir)} finishes its batch, "
              f"checkpoints and ends with status stopped")
    return 0
