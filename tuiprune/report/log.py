"""The run a report is about: its folded event log (``engine.runlog``) and what the run
directory says besides (is the engine process alive, which exports exist). Torch-free."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from engine.errors import UserError
from engine.pidfile import engine_alive
from engine.rundir import EVENTS_FILE
from engine.runlog import RunLog, read_log
from tuiprune.exportdoc import read_exports
from tuiprune.format import printable


@dataclass
class LoggedRun:
    """A run directory read once for the report."""

    log: RunLog
    run_dir: Path
    engine_alive: Optional[bool]
    exports: List[Tuple[str, Dict[str, Any]]]

    @property
    def name(self) -> str:
        """The run's name (or id, or directory name), safe to print."""
        st = self.log.started
        for value in ((st["name"], st["run_id"]) if st is not None else ()):
            if value:
                return printable(value, newlines=False)
        return printable(self.run_dir.name, newlines=False)


def log_path(run_dir: Path) -> Path:
    """``RUN_DIR/events.jsonl`` (or the log file itself), or a UserError saying what is
    wrong with the argument."""
    run_dir = Path(run_dir)
    if run_dir.is_dir():
        log = run_dir / EVENTS_FILE
        if not log.is_file():
            raise UserError(f"{printable(run_dir)}: no {EVENTS_FILE} — not a run directory, or "
                            f"the run never started; pass the directory a run wrote")
        return log
    if run_dir.is_file():
        return run_dir
    raise UserError(f"{printable(run_dir)}: no such run directory")


def read_run(run_dir: Path) -> LoggedRun:
    """Read a run directory (or its ``events.jsonl``) for the report."""
    path = log_path(run_dir)
    try:
        log = read_log(path)
    except OSError as exc:
        raise UserError(f"{printable(path)}: cannot read the event log "
                        f"({printable(exc.strerror or exc)})") from None
    return LoggedRun(log=log, run_dir=path.parent, engine_alive=engine_alive(path.parent),
                     exports=read_exports(path.parent))


def planned_epochs(log: RunLog, state: int) -> Optional[int]:
    """The epochs ``state`` plans: its ``state_started``'s, else ``run_started``'s."""
    st = log.states.get(state)
    own = st.planned_epochs if st is not None else None
    return own or (log.started["epochs"] if log.started is not None else None)


def missing_epochs(log: RunLog, state: int) -> List[int]:
    """The planned epochs of ``state`` that have no ``epoch_ended``."""
    want, st = planned_epochs(log, state), log.states.get(state)
    return [e for e in range(want) if st is None or e not in st.epochs] if want else []
