"""Sweep directories for the run browser's and compare screen's tests, made with
``engine.sweepdir`` from the engine's fixture runs (no engine is run)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Dict, List

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    import tomli as tomllib

from engine.sweepdir import write_sweep
from helpers.dash import FIXTURE_RUNS

CREATED = 1_764_000_000.0
GRID = {"prune.method": ["refill", "rsst"], "prune.sorting": ["global", "layer-wise"]}
# member -> the fixture run copied in as its run directory ("refill_layer-wise" stays pending)
MEMBERS = {"refill_global": "refill_global", "rsst_global": "rsst_global",
           "rsst_layer-wise": "rsst_layerwise"}


def copy_run(src: Path, dst: Path) -> Path:
    """A fixture run's small files (no checkpoints) in ``dst``."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file():
            shutil.copy(f, dst / f.name)
    return dst


def copy_fixtures(out: Path, names: List[str] = None) -> Path:
    """An output directory ``out`` holding copies of the fixture runs (all, or ``names``)."""
    for src in sorted(FIXTURE_RUNS.iterdir()):
        if names is None or src.name in names:
            copy_run(src, out / src.name)
    return out


def fixture_sweep(root: Path, grid: Dict[str, list] = None,
                  members: Dict[str, str] = None, stamp: str = "20251124-160000") -> Path:
    """A sweep directory ``root/demo-sweep-<stamp>`` over ``grid`` (default: method x
    sorting) whose members named in ``members`` hold copies of those fixture runs; the rest
    are pending."""
    base = tomllib.loads((FIXTURE_RUNS / "rsst_global" / "config.toml").read_text())
    sweep = write_sweep(root / f"demo-sweep-{stamp}", "demo", grid or GRID, base, CREATED)
    members = MEMBERS if members is None else members
    for m in sweep.members:
        if m.name in members:
            copy_run(FIXTURE_RUNS / members[m.name], m.run_dir)
    return sweep.path
