"""The run table of a directory (torch-free): what ``tuiprune ls`` prints and the dashboard's
run browser shows.

:func:`list_runs` takes

- an output directory (``runs``): its run directories and the members of its sweep
  directories, oldest first (a sweep's members together, in the sweep's order);
- a sweep directory: its members in the sweep's order, those not started yet as ``pending``;
- a run directory: that run alone.

Each row is read fast (:mod:`tuiprune.runrow`: the head and tail of its log). Pass the rows of
the previous call as ``known`` and only what changed is read again (a live browser lists every
second). A sweep member's ``values`` are its grid values; every other row's are the config keys
that differ between the listed runs (:func:`differing_keys`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from engine.errors import UserError
from engine.rundir import CONFIG_FILE, is_run_dir
from engine.sweepdir import Sweep, is_sweep_dir, member_config, read_sweep
from tuiprune.runrow import RunRow, flatten, read_row, refresh_row

IGNORED_KEYS = ("run.name", "run.output_dir")  # differ by design; the name column shows them
_MISSING = object()


def list_runs(directory: Path, known: Optional[Dict[Path, RunRow]] = None) -> List[RunRow]:
    """The rows of ``directory`` (see the module docstring); a UserError when it is neither
    an output, a sweep nor a run directory."""
    directory = Path(directory)
    if not directory.exists():
        raise UserError(f"{directory} does not exist (give an output directory such as runs, a "
                        f"sweep directory or a run directory)")
    if not directory.is_dir():
        raise UserError(f"{directory} is a file, not a directory of runs")
    known = known or {}
    if is_sweep_dir(directory):
        rows = sweep_rows(read_sweep(directory), known)
    elif is_run_dir(directory):
        rows = [_row(directory, known)]
    else:
        rows = [r for _, group in sorted(_groups(directory, known), key=lambda g: g[0])
                for r in group]
    keys = differing_keys(rows)
    for row in rows:
        if row.sweep is None:
            row.values = {k: row.config.get(k) for k in keys}
    return rows


def sweep_rows(sweep: Sweep, known: Optional[Dict[Path, RunRow]] = None) -> List[RunRow]:
    """One row per member of ``sweep``, in its order; a member not started is ``pending``."""
    known = known or {}
    rows = []
    for member in sweep.members:
        if member.run_dir.is_dir():
            row = _row(member.run_dir, known, sweep.path.name, member.values)
        else:
            row = pending_row(sweep, member.name, member.values)
        rows.append(row)
    return rows


def pending_row(sweep: Sweep, name: str, values: dict) -> RunRow:
    """The row of a member not started yet: what its config says."""
    cfg = flatten(member_config(sweep.base, values))
    return RunRow(sweep.path / name, name, sweep.path.name, dict(values), "pending",
                  cfg.get("prune.method"), cfg.get("prune.sorting"),
                  cfg.get("prune.criterion"), 0, cfg.get("prune.states"), config=cfg)


def differing_keys(rows: Iterable[RunRow]) -> List[str]:
    """The config keys (``section.key``) whose values are not the same in every row that has
    a config, in the order they first appear; ``run.name`` and ``run.output_dir`` aside."""
    configs = [r.config for r in rows if r.config]
    if len(configs) < 2:
        return []
    keys: Dict[str, None] = {}
    for cfg in configs:
        keys.update(dict.fromkeys(cfg))
    first = configs[0]
    return [k for k in keys if k not in IGNORED_KEYS and
            any(c.get(k, _MISSING) != first.get(k, _MISSING) for c in configs[1:])]


def _row(path: Path, known: Dict[Path, RunRow], sweep: Optional[str] = None,
         values: Optional[dict] = None) -> RunRow:
    if path in known:
        return refresh_row(known[path])
    return read_row(path, sweep, values)


def _groups(output_dir: Path, known: Dict[Path, RunRow]) -> List[Tuple[float, List[RunRow]]]:
    """(start time, rows) per run directory and per sweep directory in ``output_dir``."""
    groups: List[Tuple[float, List[RunRow]]] = []
    with os.scandir(output_dir) as entries:
        children = sorted(Path(e.path) for e in entries if e.is_dir())
    for child in children:
        if is_sweep_dir(child):
            try:
                sweep = read_sweep(child)
            except UserError:
                continue  # a damaged sweep.toml: its members are not listed
            groups.append((sweep.created, sweep_rows(sweep, known)))
        elif is_run_dir(child):
            row = _row(child, known)
            groups.append((row.started if row.started is not None else _mtime(child), [row]))
    return groups


def _mtime(run_dir: Path) -> float:
    for path in (run_dir / CONFIG_FILE, run_dir):
        try:
            return path.stat().st_mtime
        except OSError:
            continue
    return 0.0
