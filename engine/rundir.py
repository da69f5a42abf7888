"""Run directories: every file name in one, naming new ones, recognising and listing existing
ones (torch-free).

::

    RUN_DIR/
      config.toml      the resolved configuration
      events.jsonl     the event log (docs/events.md)
      engine.log       the engine's own output
      engine.pid       the engine process while it runs
      engine.lock      held (flock) by the one process that writes the run
      stop.request     a stop asked for from another host (polled by the engine)
      checkpoints/     latest.pt (resume point), init.pt (rewind target "init"),
                       rewind.pt (rewind target "epoch:K"), state<N>_best.pt
      export-state<N>/ ``tuiprune export``'s default output, described by its export.json
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Dict, List, Optional

from engine.errors import UserError

CONFIG_FILE = "config.toml"
EVENTS_FILE = "events.jsonl"
ENGINE_LOG = "engine.log"
PID_FILE = "engine.pid"
LOCK_FILE = "engine.lock"
STOP_FILE = "stop.request"
CHECKPOINT_DIR = "checkpoints"
LATEST = "latest.pt"
INIT = "init.pt"
REWIND = "rewind.pt"
EXPORT_FILE = "export.json"
_BEST_RE = re.compile(r"^state(\d+)_best\.pt$")


def best_name(state: int) -> str:
    """File name of a state's best checkpoint."""
    return f"state{state}_best.pt"


def checkpoint_path(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / name


def relative(name: str) -> str:
    """A checkpoint's path relative to the run directory, as events record it."""
    return f"{CHECKPOINT_DIR}/{name}"


def best_checkpoints(run_dir: Path) -> Dict[int, Path]:
    """State → its ``state<N>_best.pt``, for every state that has one, in state order."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    found = {}
    if folder.is_dir():
        for p in folder.iterdir():
            m = _BEST_RE.match(p.name)
            if m and p.is_file():
                found[int(m.group(1))] = p
    return dict(sorted(found.items()))


def final_best(run_dir: Path) -> Optional[Path]:
    """The best checkpoint of the last state that has one, or None."""
    found = best_checkpoints(run_dir)
    return found[max(found)] if found else None


def export_dir(run_dir: Path, state: int) -> Path:
    """Where ``tuiprune export`` writes state ``state`` by default."""
    return Path(run_dir) / f"export-state{state}"


def export_docs(run_dir: Path) -> List[Path]:
    """Every ``export.json`` one level below the run directory, in name order."""
    return sorted(p for p in Path(run_dir).glob(f"*/{EXPORT_FILE}") if p.is_file())


def new_run_dir(cfg: dict) -> Path:
    """``<output_dir>/<name>-<YYYYmmdd-HHMMSS>`` (with a ``-N`` suffix if that exists)."""
    base = Path(cfg["run"]["output_dir"])
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = cfg["run"]["name"]
    path = base / f"{name}-{stamp}"
    n = 1
    while path.exists():
        path = base / f"{name}-{stamp}-{n}"
        n += 1
    return path


def is_run_dir(path: Path) -> bool:
    path = Path(path)
    return path.is_dir() and ((path / EVENTS_FILE).is_file() or (path / CONFIG_FILE).is_file())


def require_run_dir(path: Path) -> Path:
    """``path`` if it is a run directory, else a UserError saying what it is instead."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist (expected a run directory such as "
                        f"runs/demo-20260101-120000)")
    if not path.is_dir():
        raise UserError(f"{path} is a file, not a run directory")
    if not is_run_dir(path):
        raise UserError(f"{path} is not a run directory: it has no {EVENTS_FILE} or "
                        f"{CONFIG_FILE}")
    return path


def newest_run(output_dir: Path) -> Optional[Path]:
    """The most recently started run under ``output_dir``, or None."""
    base = Path(output_dir)
    if not base.is_dir():
        return None
    runs = [p for p in base.iterdir() if is_run_dir(p)]
    if not runs:
        return None
    return max(runs, key=lambda p: (p / CONFIG_FILE).stat().st_mtime
               if (p / CONFIG_FILE).exists() else p.stat().st_mtime)
