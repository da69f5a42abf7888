"""Sweep directories: a grid of runs under one folder (torch-free).

::

    <output_dir>/<name>-sweep-<YYYYmmdd-HHMMSS>/
      sweep.toml                  [sweep] name, created; [grid] "section.key" = [values];
                                  [base] the resolved base config (every member's start)
      <member>/                   one ordinary run directory per combination, named after
                                  its values, e.g. "global_refill"
      ...

A member's ``config.toml`` is the base config with its combination applied; the member's
values are recorded in ``sweep.toml`` under ``[members.<member>]``.
"""

from __future__ import annotations

import itertools
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    import tomli as tomllib

import tomli_w

from engine.config import without_none
from engine.errors import UserError

SWEEP_FILE = "sweep.toml"


@dataclass
class Member:
    """One combination of the grid and its run directory."""

    name: str
    run_dir: Path
    values: Dict[str, Any]


@dataclass
class Sweep:
    path: Path
    name: str
    grid: Dict[str, List[Any]]
    base: Dict[str, Any]
    members: List[Member] = field(default_factory=list)


def is_sweep_dir(path: Path) -> bool:
    return (Path(path) / SWEEP_FILE).is_file()


def member_name(values: Dict[str, Any]) -> str:
    """A directory name from a combination's values, in grid order: ``global_refill``."""
    parts = [re.sub(r"[^A-Za-z0-9.+-]+", "-", str(v)).strip("-") or "x"
             for v in values.values()]
    return "_".join(parts)[:120]


def combinations(grid: Dict[str, List[Any]]) -> List[Dict[str, Any]]:
    """Every combination of the grid's values, the first key varying slowest."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*grid.values())]


def write_sweep(path: Path, name: str, grid: Dict[str, List[Any]], base: dict,
                created: float) -> Sweep:
    """Create ``sweep.toml`` for a new sweep at ``path`` and return its plan (member names are
    made unique with a ``-N`` suffix when two combinations would share one)."""
    members, seen = [], set()
    for values in combinations(grid):
        mname = member_name(values)
        n = 1
        while mname in seen:
            n += 1
            mname = f"{member_name(values)}-{n}"
        seen.add(mname)
        members.append(Member(mname, path / mname, values))
    doc = {"sweep": {"name": name, "created": created},
           "grid": grid, "base": without_none(base),
           "members": {m.name: m.values for m in members}}
    path.mkdir(parents=True, exist_ok=False)
    (path / SWEEP_FILE).write_text(tomli_w.dumps(doc))
    return Sweep(path, name, grid, base, members)


def read_sweep(path: Path) -> Sweep:
    """The sweep at ``path``, or a UserError saying what the directory is instead."""
    path = Path(path)
    if not is_sweep_dir(path):
        raise UserError(f"{path} is not a sweep directory (it has no {SWEEP_FILE}); pass a "
                        f"directory made by `tuiprune sweep`")
    try:
        doc = tomllib.loads((path / SWEEP_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"{path / SWEEP_FILE} cannot be read ({exc})") from None
    try:
        members = [Member(str(n), path / str(n), dict(v))
                   for n, v in doc.get("members", {}).items()]
        return Sweep(path, str(doc["sweep"]["name"]), dict(doc["grid"]), dict(doc["base"]),
                     members)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"{path / SWEEP_FILE} is not a sweep file ({type(exc).__name__}: "
                        f"{exc})") from None
