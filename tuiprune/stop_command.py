"""``tuiprune stop RUN_DIR``: ask a running engine to checkpoint and stop (torch-free)."""

from __future__ import annotations

from pathlib import Path

from engine.errors import UserError
from engine.pidfile import engine_alive, read_pidfile, request_stop
from engine.rundir import require_run_dir
from tuiprune.format import printable


def stop_main(run_dir: Path) -> int:
    run_dir = require_run_dir(Path(run_dir))
    alive = engine_alive(run_dir)
    if alive is None and read_pidfile(run_dir) is not None:
        raise UserError(f"the engine of {run_dir} runs on host "
                        f"{read_pidfile(run_dir).get('host')}: run `tuiprune stop` there")
    if not alive or not request_stop(run_dir):
        raise UserError(f"no engine is running {run_dir}: nothing to stop")
    print(f"stop requested: the engine of {printable(run_dir)} finishes its batch, "
          f"checkpoints and ends with status stopped")
    return 0
