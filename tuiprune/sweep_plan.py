"""Planning a sweep (torch-free): the grid from ``--grid`` and the config file's
``[sweep.grid]`` table, every value checked by the run config's schema, and each member's
resolved config.

A config file carries its grid in a ``[sweep]`` table that ``tuiprune sweep`` takes out before
the rest is validated as an ordinary run config::

    [sweep.grid]
    "prune.method" = ["refill", "rsst"]
    "prune.sorting" = ["global", "layer-wise"]

(``prune.method = [...]`` without quotes, i.e. a ``[sweep.grid.prune]`` table, means the
same.) ``--grid KEY=V1,V2`` adds a key or replaces the file's values for it; values are parsed
like ``--set`` values (TOML, falling back to a plain string), commas inside ``[...]``, ``{...}``
or quotes do not split.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from engine.config import SCHEMA, apply_overrides, read_toml, resolve
from engine.errors import UserError
from engine.sweepdir import combinations, member_config

DEMO_GRID = Path(__file__).resolve().parent.parent / "engine" / "demo_grid.toml"
SWEEP_TABLE = "sweep"
MAX_COMBINATIONS = 256
FIXED_KEYS = ("run.output_dir",)  # the sweep directory decides where members go
ALL_KEYS = [f"{section}.{name}" for section, keys in SCHEMA.items() for name in keys]


@dataclass
class Plan:
    """A checked sweep: the resolved base config, the grid, and one resolved config per
    combination (in :func:`engine.sweepdir.combinations` order)."""

    base: dict
    grid: Dict[str, List[Any]]
    members: List[dict]


def plan_sweep(config: Path, overrides: Sequence[str], grid_args: Sequence[str],
               yes: bool = False) -> Plan:
    """Read ``config`` (or the demo grid for ``demo``), apply ``--set`` ``overrides`` and the
    ``--grid`` arguments, and check everything; a :class:`UserError` names the first
    problem."""
    path = DEMO_GRID if str(config) == "demo" and not Path(config).exists() else Path(config)
    raw = read_toml(path)
    grid = file_grid(raw.pop(SWEEP_TABLE, None), path)
    for key, values in parse_grid_args(grid_args).items():
        grid[key] = values
    if not grid:
        raise UserError(f"empty grid: {path} has no [sweep.grid] table and no --grid was given; "
                        f"add e.g. --grid prune.method=refill,rsst")
    fixed = {o.partition("=")[0].strip() for o in overrides}
    for key in grid:
        if key in fixed:
            raise UserError(f"{key} is both set with --set and varied by the grid; drop one")
        if key in FIXED_KEYS:
            raise UserError(f"the grid cannot vary {key}: every member lives in the sweep "
                            f"directory; set it with --set instead")
    apply_overrides(raw, overrides)
    base = resolve(raw)
    _check_size(grid, yes)
    for key, values in grid.items():
        for value in values:
            _resolve_member(base, {key: value}, f"--grid {key}: ")
    members = [_resolve_member(base, combo, f"the grid combination {_show(combo)}: ")
               for combo in combinations(grid)]
    return Plan(base, grid, members)


def file_grid(table: Any, path: Path) -> Dict[str, List[Any]]:
    """The ``[sweep]`` table of a config file as ``{"section.key": [values]}``."""
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise UserError(f"{path}: [sweep] must be a table with a grid, e.g. "
                        f"[sweep.grid] \"prune.method\" = [\"refill\", \"rsst\"]")
    for name in table:
        if name != "grid":
            raise UserError(f"{path}: unknown key sweep.{name} (the [sweep] table holds only "
                            f"grid)")
    grid: Dict[str, List[Any]] = {}
    for key, values in dict(table.get("grid", {})).items():
        nested = values if isinstance(values, dict) else {None: values}
        for name, vals in nested.items():
            dotted = key if name is None else f"{key}.{name}"
            check_key(dotted, f"{path}: [sweep.grid] ")
            if not isinstance(vals, list) or not vals:
                raise UserError(f"{path}: [sweep.grid] {dotted} must be a non-empty list of "
                                f"values, e.g. [\"refill\", \"rsst\"]; got {vals!r}")
            grid[dotted] = _unique(dotted, vals)
    return grid


def parse_grid_args(grid_args: Sequence[str]) -> Dict[str, List[Any]]:
    """``["prune.method=refill,rsst", …]`` as ``{"prune.method": ["refill", "rsst"]}``."""
    grid: Dict[str, List[Any]] = {}
    for item in grid_args:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--grid {item!r}: expected SECTION.KEY=V1,V2,…, e.g. "
                            f"--grid prune.method=refill,rsst")
        check_key(key, "--grid ")
        if key in grid:
            raise UserError(f"--grid {key} is given twice; list all its values once: "
                            f"--grid {key}=A,B")
        pieces = split_values(text)
        if not pieces or any(not p.strip() for p in pieces):
            raise UserError(f"--grid {item!r}: empty value; give the values comma-separated, "
                            f"e.g. --grid {key}=A,B")
        values = []
        for piece in pieces:
            scratch: dict = {}
            apply_overrides(scratch, [f"{key}={piece}"])
            values.append(scratch[key.split(".")[0]][key.split(".")[1]])
        grid[key] = _unique(key, values)
    return grid


def check_key(dotted: str, where: str) -> None:
    """``dotted`` names a config key, or a UserError with the closest one."""
    if dotted in ALL_KEYS:
        return
    close = difflib.get_close_matches(dotted, ALL_KEYS, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else \
        "; keys are SECTION.KEY as in the config, e.g. prune.method"
    raise UserError(f"{where}{dotted}: no such config key{hint}")


def split_values(text: str) -> List[str]:
    """Split at the commas outside brackets, braces and quotes."""
    pieces, depth, quote, current = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            pieces.append("".join(current))
            current = []
            continue
        current.append(ch)
    if current or pieces:
        pieces.append("".join(current))
    return pieces


def _unique(key: str, values: List[Any]) -> List[Any]:
    seen: List[Any] = []
    for v in values:
        if v in seen:
            raise UserError(f"the grid lists {key} = {v!r} twice; give each value once")
        seen.append(v)
    return values


def _check_size(grid: Dict[str, List[Any]], yes: bool) -> None:
    total = grid_size(grid)
    if total > MAX_COMBINATIONS and not yes:
        sizes = " × ".join(str(len(v)) for v in grid.values())
        raise UserError(f"the grid makes {total:,} runs ({sizes}); more than "
                        f"{MAX_COMBINATIONS} needs --yes (or a smaller grid)")


def _resolve_member(base: dict, values: Dict[str, Any], where: str) -> dict:
    try:
        return resolve(member_config(base, values))
    except UserError as exc:
        raise UserError(f"{where}{exc}") from None


def _show(values: Dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in values.items())


def grid_size(grid: Dict[str, List[Any]]) -> int:
    return math.prod(len(v) for v in grid.values())


def describe_grid(grid: Dict[str, List[Any]], parallel: Optional[int] = None) -> str:
    """``4 runs: prune.method (2) × prune.sorting (2)``."""
    axes = " × ".join(f"{k} ({len(v)})" for k, v in grid.items())
    at_once = f", {parallel} at a time" if parallel else ""
    return f"{grid_size(grid):,} runs: {axes}{at_once}"
