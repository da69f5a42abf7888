"""Sweep directories: a grid of runs under one folder (torch-free).

::

    <output_dir>/<name>-sweep-<YYYYmmdd-HHMMSS>/
      sweep.toml                  [sweep] name, created; [grid] "section.key" = [values];
                                  [base] the resolved base config (every member's start)
      sweep.log                   the sweep driver's output (members started and ended)
      engine.pid, engine.lock     the sweep driver process while it runs (engine.pidfile,
                                  engine.lock: the same files and rules as a run's engine)
      <member>/                   one ordinary run directory per combination, named after
                                  its values, e.g. "global_refill"
      ...

A member's ``config.toml`` is the base config with its combination applied
(:func:`member_config`); the member's values are recorded in ``sweep.toml`` under
``[members.<member>]``. A member whose directory does not exist yet has not been started.
"""

from __future__ import annotations

import copy
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
from engine.rundir import new_run_dir

SWEEP_FILE = "sweep.toml"
SWEEP_LOG = "sweep.log"


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
    parallel: int = 1     # members run at once (``--parallel``)
    created: float = 0.0  # Unix time


def is_sweep_dir(path: Path) -> bool:
    return (Path(path) / SWEEP_FILE).is_file()


def member_name(values: Dict[str, Any]) -> str:
    """A directory name from a combination's values, in grid order: ``global_refill``."""
    parts = [re.sub(r"[^A-Za-z0-9.+-]+", "-", str(v)).strip("-") or "x"
             for v in values.values()]
    return "_".join(parts)[:120]


def new_sweep_dir(cfg: dict) -> Path:
    """``<output_dir>/<name>-sweep-<YYYYmmdd-HHMMSS>`` (with a ``-N`` suffix if that exists);
    not created."""
    return new_run_dir({"run": {"output_dir": cfg["run"]["output_dir"],
                                "name": f"{cfg['run']['name']}-sweep"}})


def set_dotted(cfg: dict, dotted: str, value: Any) -> None:
    """``cfg["section"]["key"] = value`` for ``dotted = "section.key"`` (in place)."""
    section, _, key = dotted.partition(".")
    cfg.setdefault(section, {})[key] = value


def member_config(base: dict, values: Dict[str, Any]) -> dict:
    """A copy of ``base`` with a combination's ``{"section.key": value}`` applied (not
    validated: :func:`engine.config.resolve` it)."""
    cfg = copy.deepcopy(base)
    for dotted, value in values.items():
        set_dotted(cfg, dotted, value)
    return cfg


def combinations(grid: Dict[str, List[Any]]) -> List[Dict[str, Any]]:
    """Every combination of the grid's values, the first key varying slowest."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*grid.values())]


def plan_members(path: Path, grid: Dict[str, List[Any]]) -> List[Member]:
    """The members of a sweep at ``path`` over ``grid``, in :func:`combinations` order (names
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
    return members


def write_sweep(path: Path, name: str, grid: Dict[str, List[Any]], base: dict,
                created: float, parallel: int = 1) -> Sweep:
    """Create ``sweep.toml`` for a new sweep at ``path`` and return it."""
    members = plan_members(path, grid)
    doc = {"sweep": {"name": name, "created": created, "parallel": parallel},
           "grid": grid, "base": without_none(base),
           "members": {m.name: m.values for m in members}}
    path.mkdir(parents=True, exist_ok=False)
    (path / SWEEP_FILE).write_text(tomli_w.dumps(doc))
    return Sweep(path, name, grid, base, members, parallel, created)


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
        members = [Member(_plain(str(n), path), path / str(n), dict(v))
                   for n, v in doc.get("members", {}).items()]
        head = doc["sweep"]
        return Sweep(path, str(head["name"]), dict(doc["grid"]), dict(doc["base"]), members,
                     max(1, int(head.get("parallel", 1))), float(head.get("created", 0.0)))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"{path / SWEEP_FILE} is not a sweep file ({type(exc).__name__}: "
                        f"{exc})") from None


def _plain(name: str, path: Path) -> str:
    """A member name that stays inside the sweep directory."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise UserError(f"{path / SWEEP_FILE} names a member {name!r}, which is not a plain "
                        f"directory name; the file was edited by hand or is damaged")
    return name
