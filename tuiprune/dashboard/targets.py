"""What the user pointed ``watch``/``replay`` at: a run directory, an event log, a config, or
nothing (the newest run). Resolving a target starts nothing (``tuiprune.launch`` starts a run);
problems the user can fix become :class:`UserError`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from engine.config import DEMO_CONFIG
from engine.errors import UserError
from engine.logread import parse_text
from engine.rundir import EVENTS_FILE, is_run_dir
from tuiprune.format import printable
from tuiprune.launch import DEFAULT_OUTPUT_DIR, newest_run

RUN_HINT = "a run directory (output_dir/<name>-<YYYYmmdd-HHMMSS>) or its events.jsonl"


@dataclass(frozen=True)
class WatchTarget:
    """Either a config to start a run from (with its ``--set`` overrides), or an existing run
    directory to attach to."""

    config: Optional[Path] = None
    overrides: Tuple[str, ...] = ()
    run_dir: Optional[Path] = None


def _shown(path: Path) -> str:
    return printable(path, newlines=False)


def check_log(log: Path, *, must_have_events: bool) -> None:
    """Raise :class:`UserError` when ``log`` cannot be read, or (``must_have_events``) holds
    nothing or does not start like an event log."""
    try:
        with open(log, "rb") as f:
            head = f.read(1 << 20)
    except FileNotFoundError:
        raise UserError(f"{_shown(log)} does not exist: pass {RUN_HINT}") from None
    except IsADirectoryError:
        raise UserError(f"{_shown(log)} is a directory, not an event log: pass {RUN_HINT}") \
            from None
    except OSError as exc:
        raise UserError(f"cannot read {_shown(log)} ({exc.strerror}): check its permissions") \
            from None
    if not must_have_events:
        return
    if not head.strip():
        raise UserError(f"{_shown(log)} is empty: there is nothing to replay yet "
                        "(follow a live run with: tuiprune watch RUN_DIR)")
    complete = head[:head.rfind(b"\n") + 1].decode("utf-8", "replace")
    if not complete:
        raise UserError(f"{_shown(log)} is not a tuiprune event log (its first line is "
                        f"incomplete or longer than a megabyte): pass {RUN_HINT}")
    parsed = parse_text(complete)
    if not parsed.events and parsed.malformed:
        raise UserError(f"{_shown(log)} is not a tuiprune event log (no event in its first "
                        f"lines; the first: {printable(parsed.problems[0])}): pass {RUN_HINT}")


def replay_target(target: str) -> Tuple[Optional[Path], Path]:
    """(run directory or None, event log) for ``tuiprune replay TARGET``."""
    path = Path(target).expanduser()
    if path.is_dir():
        if not (path / EVENTS_FILE).is_file():
            raise UserError(f"{_shown(path)} is not a run directory (it has no {EVENTS_FILE}): "
                            f"pass {RUN_HINT}")
        log = path / EVENTS_FILE
    elif path.exists():
        log = path
    else:
        raise UserError(f"no such run directory or event log: {_shown(path)}")
    check_log(log, must_have_events=True)
    return (log.parent if is_run_dir(log.parent) else None), log


def watch_target(target: Optional[str], overrides: List[str]) -> WatchTarget:
    """What ``tuiprune watch [TARGET] [--set ...]`` means: a config (a ``.toml`` file, or the
    word ``demo`` for the shipped demo) to start, or the run directory to attach to (TARGET,
    its events.jsonl, or the newest run under ``runs/``)."""
    if target is not None:
        path = Path(target).expanduser()
        if path.is_file() and path.suffix == ".toml":
            return WatchTarget(config=path, overrides=tuple(overrides))
        if target == "demo" and not path.exists():
            return WatchTarget(config=DEMO_CONFIG, overrides=tuple(overrides))
    run_dir = _existing_run(target)
    if overrides:
        raise UserError("--set only applies when starting a run from a config file; "
                        f"{_shown(run_dir)} is an existing run")
    log = run_dir / EVENTS_FILE
    if log.exists():
        check_log(log, must_have_events=False)
    return WatchTarget(run_dir=run_dir)


def _existing_run(target: Optional[str]) -> Path:
    if target is None:
        run = newest_run(DEFAULT_OUTPUT_DIR)
        if run is None:
            raise UserError(f"no run under {DEFAULT_OUTPUT_DIR}{os.sep} to attach to: start one "
                            "with tuiprune watch CONFIG, or pass a run directory")
        return Path(run)
    path = Path(target).expanduser()
    if path.is_file() and path.name == EVENTS_FILE:
        path = path.parent
    if not path.exists():
        raise UserError(f"no such config file or run directory: {_shown(path)}")
    if not is_run_dir(path):
        what = "directory" if path.is_dir() else "file"
        raise UserError(f"{_shown(path)} is not a run directory or a .toml config ({what} "
                        f"without {EVENTS_FILE}): pass a config to start a run, or {RUN_HINT}")
    return path
