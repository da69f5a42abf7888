"""Run directories: naming new ones, recognising existing ones, finding the newest (torch-free)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from engine.errors import UserError
from engine.events import EVENTS_FILE

CONFIG_FILE = "config.toml"
ENGINE_LOG = "engine.log"


def new_run_dir(cfg: dict) -> Path:
    """``<output_dir>/<name>-<YYYYmmdd-HHMMSS>`` (with a ``-N`` suffix if that exists)."""
    base = Path(cfg["run"]["output_dir"])
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = base / f"{cfg['run']['name']}-{stamp}"
    n = 1
    while path.exists():
        path = base / f"{cfg['run']['name']}-{stamp}-{n}"
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
