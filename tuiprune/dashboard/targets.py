"""What the user pointed ``watch``/``replay`` at: a run directory, an event log, a config, or
nothing (the newest run). Problems the user can fix become :class:`UserError`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Tuple

from engine.errors import UserError
from engine.rundir import is_run_dir
from tuiprune.eventlog import LOG_NAME, parse_line
from tuiprune.launch import DEFAULT_OUTPUT_DIR, newest_run, start_detached

RUN_HINT = "a run directory (output_dir/<name>-<YYYYmmdd-HHMMSS>) or its events.jsonl"


def check_log(log: Path, *, must_have_events: bool) -> None:
    """Raise :class:`UserError` when ``log`` cannot be read, or (``must_have_events``) holds
    nothing or does not start like an event log."""
    try:
        with open(log, "rb") as f:
            head = f.read(1 << 20)
    except FileNotFoundError:
        raise UserError(f"{log} does not exist: pass {RUN_HINT}") from None
    except IsADirectoryError:
        raise UserError(f"{log} is a directory, not an event log: pass {RUN_HINT}") from None
    except OSError as exc:
        raise UserError(f"cannot read {log} ({exc.strerror}): check its permissions") from None
    if not must_have_events:
        return
    if not head.strip():
        raise UserError(f"{log} is empty: there is nothing to replay yet "
                        "(follow a live run with: tuiprune watch RUN_DIR)")
    first = head.split(b"\n", 1)[0].decode("utf-8", "replace")
    event = parse_line(first)
    if event is None or "event" not in event:
        raise UserError(f"{log} is not a tuiprune event log (its first line is not a JSON "
                        f"event): pass {RUN_HINT}")


def replay_target(target: str) -> Tuple[Optional[Path], Path]:
    """(run directory or None, event log) for ``tuiprune replay TARGET``."""
    path = Path(target).expanduser()
    if path.is_dir():
        if not (path / LOG_NAME).is_file():
            raise UserError(f"{path} is not a run directory (it has no {LOG_NAME}): "
                            f"pass {RUN_HINT}")
        log = path / LOG_NAME
    elif path.exists():
        log = path
    else:
        raise UserError(f"no such run directory or event log: {path}")
    check_log(log, must_have_events=True)
    return (log.parent if is_run_dir(log.parent) else None), log


def watch_target(target: Optional[str], overrides: list) -> Path:
    """The run directory ``tuiprune watch TARGET`` follows; starts a run for a config."""
    if target is None:
        out = DEFAULT_OUTPUT_DIR
        run = newest_run(out)
        if run is None:
            raise UserError(f"no run under {out}{os.sep} to attach to: start one with "
                            "tuiprune watch CONFIG, or pass a run directory")
        run_dir = Path(run)
    else:
        path = Path(target).expanduser()
        if (path.is_file() and path.suffix == ".toml") or (target == "demo"
                                                            and not path.exists()):
            return start_detached(path, list(overrides))  # "demo": the shipped demo config
        if path.is_file() and path.name == LOG_NAME:
            path = path.parent
        if not path.exists():
            raise UserError(f"no such config file or run directory: {path}")
        if not is_run_dir(path):
            what = "directory" if path.is_dir() else "file"
            raise UserError(f"{path} is not a run directory or a .toml config ({what} without "
                            f"{LOG_NAME}): pass a config to start a run, or {RUN_HINT}")
        run_dir = path
    if overrides:
        raise UserError("--set only applies when starting a run from a config file; "
                        f"{run_dir} is an existing run")
    log = run_dir / LOG_NAME
    if log.exists():
        check_log(log, must_have_events=False)
    return run_dir
