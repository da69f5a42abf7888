"""What the user pointed ``watch``/``replay`` at: a run directory, an event log, a config, or
a directory of runs (an output or sweep directory; nothing means ``runs``) for the run browser.
Resolving a target starts nothing (``tuiprune.launch`` starts a run); problems the user can fix
become :class:`UserError`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from engine.config import DEMO_CONFIG
from engine.errors import UserError
from engine.logread import parse_text
from engine.rundir import EVENTS_FILE, is_run_dir
from engine.sweepdir import SWEEP_FILE, is_sweep_dir, read_sweep
from tuiprune.dashboard.browser.state import MAX_COMPARED
from tuiprune.format import printable
from tuiprune.launch import DEFAULT_OUTPUT_DIR

RUN_HINT = "a run directory (output_dir/<name>-<YYYYmmdd-HHMMSS>) or its events.jsonl"


@dataclass(frozen=True)
class WatchTarget:
    """A config to start a run from (with its ``--set`` overrides), an existing run directory
    to attach to, or a directory of runs to browse (``compare``: a sweep whose members open
    side by side)."""

    config: Optional[Path] = None
    overrides: Tuple[str, ...] = ()
    run_dir: Optional[Path] = None
    browse: Optional[Path] = None
    compare: bool = False


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


def watch_target(target: Optional[str], overrides: List[str],
                 compare: bool = False) -> WatchTarget:
    """What ``tuiprune watch [TARGET] [--set ...] [--compare]`` means: a config (a ``.toml``
    file, or the word ``demo`` for the shipped demo) to start, a run directory (or its
    events.jsonl) to attach to, or an output or sweep directory (none: ``runs``) to browse;
    ``compare``: a sweep directory of 2 to 6 members to compare."""
    if target is not None:
        path = Path(target).expanduser()
        if path.is_file() and path.suffix == ".toml" or target == "demo" and not path.exists():
            if compare:
                raise UserError("--compare takes a sweep directory (made by tuiprune sweep), "
                                "not a config")
            return WatchTarget(config=path if path.exists() else DEMO_CONFIG,
                               overrides=tuple(overrides))
    found = _existing(target)
    if overrides:
        raise UserError("--set only applies when starting a run from a config file; "
                        f"{_shown(found.run_dir or found.browse)} is "
                        f"{'an existing run' if found.run_dir else 'a directory of runs'}")
    if compare:
        _check_comparable(found.run_dir or found.browse)
        return WatchTarget(browse=found.browse, compare=True)
    if found.run_dir is not None and (found.run_dir / EVENTS_FILE).exists():
        check_log(found.run_dir / EVENTS_FILE, must_have_events=False)
    return found


def _existing(target: Optional[str]) -> WatchTarget:
    """The run directory, or the directory of runs, that ``target`` names."""
    if target is None:
        if not _holds_runs(DEFAULT_OUTPUT_DIR):
            raise UserError(f"no run under {DEFAULT_OUTPUT_DIR}{os.sep}: start one with "
                            "tuiprune watch CONFIG or tuiprune sweep CONFIG, or pass a run, "
                            "sweep or output directory")
        return WatchTarget(browse=DEFAULT_OUTPUT_DIR)
    path = Path(target).expanduser()
    if path.is_file() and path.name == EVENTS_FILE:
        path = path.parent
    if not path.exists():
        raise UserError(f"no such config file or directory: {_shown(path)}")
    if is_sweep_dir(path):
        return WatchTarget(browse=path)
    if is_run_dir(path):
        return WatchTarget(run_dir=path)
    if path.is_dir() and _holds_runs(path):
        return WatchTarget(browse=path)
    what = "directory without runs" if path.is_dir() else "file"
    raise UserError(f"{_shown(path)} is not a run, sweep or output directory, nor a .toml "
                    f"config ({what}): pass a config to start a run, {RUN_HINT}, or a "
                    "directory that holds runs")


def _holds_runs(path: Path) -> bool:
    """Whether ``path`` is a directory with a run or sweep directory in it."""
    try:
        with os.scandir(path) as entries:
            return any(e.is_dir() and (is_run_dir(Path(e.path)) or is_sweep_dir(Path(e.path)))
                       for e in entries)
    except OSError:
        return False


def _check_comparable(path: Path) -> None:
    """``path`` is a sweep of 2 to :data:`MAX_COMPARED` members, or a UserError says why not."""
    if not is_sweep_dir(path):
        raise UserError(f"{_shown(path)} is not a sweep directory (it has no {SWEEP_FILE}): "
                        "--compare takes a directory made by tuiprune sweep; to compare other "
                        f"runs, open tuiprune watch DIR, mark 2 to {MAX_COMPARED} with space "
                        "and press c")
    members = len(read_sweep(path).members)
    if members < 2:
        raise UserError(f"{_shown(path)} has {members} member{'s' if members != 1 else ''}: "
                        "comparing needs at least 2 runs")
    if members > MAX_COMPARED:
        raise UserError(f"{_shown(path)} has {members} members and the compare screen shows "
                        f"at most {MAX_COMPARED}: open tuiprune watch {_shown(path)}, mark up "
                        f"to {MAX_COMPARED} with space and press c")
