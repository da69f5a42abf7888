"""``tuiprune ls [DIR] [--json]``: the run table headless (torch-free).

A Rich table on a terminal; plain aligned columns when the output is redirected; ``--json`` a
list of rows. Under the table: how many runs are in each status, why each failed, stopped or
lost run ended so (the sweep's summary), and for a sweep whether its driver still runs.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, TextIO

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from engine.pidfile import engine_alive, read_pidfile
from engine.sweepdir import SWEEP_LOG, is_sweep_dir
from tuiprune.format import NO_VALUE, count, pct, printable, when
from tuiprune.launch import DEFAULT_OUTPUT_DIR
from tuiprune.runlist import list_runs
from tuiprune.runrow import STATUSES, RunRow, why

COLUMNS = ("name", "values", "method", "sorting", "criterion", "status", "state", "best val",
           "sparsity", "img/s", "started")
RIGHT = {"state", "best val", "sparsity", "img/s"}
STATUS_STYLE = {"live": "bold cyan", "completed": "green", "stopped": "yellow",
                "failed": "bold red", "lost": "red", "pending": "dim"}
ENDED_BADLY = ("failed", "lost", "stopped")
DROP_ORDER = ("criterion", "started", "img/s", "values", "sorting", "method")
VALUES_MIN = 16


def ls_main(directory: Optional[Path], as_json: bool = False,
            stream: Optional[TextIO] = None) -> int:
    stream = stream or sys.stdout
    target = Path(directory) if directory is not None else DEFAULT_OUTPUT_DIR
    if directory is None and not target.exists():
        rows: List[RunRow] = []
    else:
        rows = list_runs(target)
    if as_json:
        json.dump([r.as_dict() for r in rows], stream, indent=1, default=str)
        stream.write("\n")
        return 0
    if not rows:
        print(f"no runs in {printable(target)} (start one with `tuiprune run CONFIG` or "
              f"`tuiprune sweep CONFIG`)", file=stream)
        return 0
    render(rows, stream, prefix_sweep=not is_sweep_dir(target))
    for line in summary_lines(rows) + driver_lines(target, rows):
        print(line, file=stream)
    return 0


def cells(row: RunRow, prefix_sweep: bool = True) -> Dict[str, str]:
    """The row's cells as text (every string made safe for a terminal)."""
    name = f"{row.sweep}/{row.name}" if row.sweep and prefix_sweep else row.name
    state = f"{row.states_done}/{row.states_total if row.states_total is not None else '?'}"
    return {"name": printable(name, newlines=False), "values": values_text(row.values),
            "method": printable(row.method or NO_VALUE, newlines=False),
            "sorting": printable(row.sorting or NO_VALUE, newlines=False),
            "criterion": printable(row.criterion or NO_VALUE, newlines=False),
            "status": printable(row.status, newlines=False), "state": state, "best val": pct(row.best_val_acc),
            "sparsity": pct(row.final_sparsity), "img/s": count(row.images_per_s),
            "started": when(row.started)}


def value_parts(values: Dict[str, Any]) -> List[str]:
    """``["method=rsst", "head_ratio=[0.3, 0.2]"]``: each ``key=value`` (the key's last part
    where that is unambiguous), printable, one part per key."""
    short = [k.rsplit(".", 1)[-1] for k in values]
    parts = []
    for (key, value), name in zip(values.items(), short):
        label = name if short.count(name) == 1 else key
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        parts.append(printable(f"{label}={text}", newlines=False))
    return parts


def values_text(values: Dict[str, Any]) -> str:
    """``method=rsst sorting=global``: the :func:`value_parts` on one line."""
    return " ".join(value_parts(values)) or NO_VALUE


def render(rows: List[RunRow], stream: TextIO, prefix_sweep: bool = True) -> None:
    """The table: Rich on a terminal (leaving out the least needed columns when it is too
    narrow), plain aligned columns otherwise."""
    table = [cells(row, prefix_sweep) for row in rows]
    widths = {c: max([len(c)] + [len(t[c]) for t in table]) for c in COLUMNS}
    if not stream.isatty():
        for line in [dict(zip(COLUMNS, COLUMNS))] + table:
            stream.write("  ".join(line[c].rjust(widths[c]) if c in RIGHT else
                                   line[c].ljust(widths[c]) for c in COLUMNS).rstrip() + "\n")
        return
    console = Console(file=stream, highlight=False)
    shown = fitting_columns(widths, console.width)
    rich_table = Table(box=box.SIMPLE_HEAD, pad_edge=False, header_style="bold")
    for col in shown:  # only the values fold; the rest keep their width
        rich_table.add_column(col, justify="right" if col in RIGHT else "left",
                              no_wrap=col != "values", overflow="fold",
                              min_width=None if col == "values" else widths[col])
    for text in table:
        rich_table.add_row(*(Text(text[c], style=STATUS_STYLE.get(text[c], "") if c == "status"
                                  else "") for c in shown))
    console.print(rich_table)
    left_out = [c for c in COLUMNS if c not in shown]
    if left_out:
        console.print(f"(left out to fit the terminal: {', '.join(left_out)}; a wider one or "
                      f"--json shows them)", style="dim", highlight=False)


def fitting_columns(widths: Dict[str, int], width: int) -> List[str]:
    """The columns that fit ``width`` cells, dropping :data:`DROP_ORDER` as needed (the
    values column counts with at most :data:`VALUES_MIN` cells: it folds)."""
    shown = list(COLUMNS)
    for col in DROP_ORDER:
        need = sum(min(widths[c], VALUES_MIN) if c == "values" else widths[c]
                   for c in shown) + 3 * len(shown)
        if need <= width:
            break
        shown.remove(col)
    return shown


def summary_lines(rows: List[RunRow]) -> List[str]:
    """``4 runs: 3 completed, 1 failed`` and one line per run that ended badly, saying why."""
    counts = Counter(r.status for r in rows)
    order = [*STATUSES, *sorted(set(counts) - set(STATUSES))]  # a newer writer's statuses
    tally = ", ".join(f"{counts[s]} {printable(s, newlines=False)}" for s in order
                      if counts[s])
    lines = [f"{len(rows)} run{'s' if len(rows) != 1 else ''}: {tally}"]
    for row in rows:
        if row.status in ENDED_BADLY:
            lines.append(f"  {printable(row.name, newlines=False)} {printable(row.status)}: "
                         f"{printable(why(row), newlines=False)}")
    return lines


def driver_lines(directory: Path, rows: List[RunRow]) -> List[str]:
    """For a sweep directory (``rows``: its members): whether its driver runs, and how to
    finish what is left."""
    if not is_sweep_dir(directory):
        return []
    if engine_alive(directory):
        pid = read_pidfile(directory)["pid"]
        return [f"sweep driver running (pid {pid}); its log: {printable(directory / SWEEP_LOG)}"]
    return [f"sweep driver not running; finish the rest with `tuiprune sweep --resume "
            f"{printable(directory)}`"] if any(r.status != "completed" for r in rows) else []
