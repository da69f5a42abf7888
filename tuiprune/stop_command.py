"""``tuiprune stop RUN_DIR|SWEEP_DIR``: ask a running engine, or every engine of a sweep, to
checkpoint and stop (torch-free).

A local engine gets SIGTERM; an engine on another host (the run directory on a shared
filesystem) finds ``RUN_DIR/stop.request``, which it polls about once a second."""

from __future__ import annotations

from pathlib import Path

from engine.errors import UserError
from engine.pidfile import engine_alive, read_pidfile, request_stop
from engine.rundir import STOP_FILE, require_run_dir
from engine.sweepdir import is_sweep_dir, read_sweep
from tuiprune.format import printable


def stop_main(run_dir: Path) -> int:
    if is_sweep_dir(Path(run_dir)):
        return stop_sweep(Path(run_dir))
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


def stop_sweep(sweep_dir: Path) -> int:
    """Stop a sweep: its driver starts no new member and passes the stop on to each running
    one; without a driver, each running member is asked directly."""
    sweep = read_sweep(sweep_dir)
    if engine_alive(sweep_dir) and request_stop(sweep_dir):
        print(f"stop requested: the driver of {printable(sweep_dir)} starts no new member, "
              f"and each running member checkpoints and ends with status stopped")
        return 0
    stopped = [m.name for m in sweep.members if m.run_dir.is_dir() and request_stop(m.run_dir)]
    if not stopped:
        raise UserError(f"nothing of the sweep {sweep_dir} is running: nothing to stop")
    print(f"stop requested: {printable(', '.join(stopped))} of {printable(sweep_dir)} "
          f"checkpoint and end with status stopped")
    return 0
