"""Shared helpers for the report tests: fixture runs copied to a temporary directory, logs read
and doctored with plain ``json``, and the Markdown tables of a report parsed back."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Callable, Dict, List, Tuple

RUNS = Path(__file__).resolve().parents[1] / "fixtures" / "runs"
COMPLETED = ["refill_global", "rsst_global", "rsst_layerwise"]
_PIPE = re.compile(r"(?<!\\)\|")
_ESCAPED = re.compile(r"\\([\\`*_\[\]<>|&~])")


def plain(markdown: str) -> str:
    """Markdown text without the report's backslash escapes: the characters a reader sees."""
    return _ESCAPED.sub(r"\1", markdown)


def events(run: Path) -> List[dict]:
    """Every line of a run's log, parsed with ``json`` (the fixtures have no bad line)."""
    return [json.loads(x) for x in (Path(run) / "events.jsonl").read_text().splitlines()]


def of(evs: List[dict], kind: str) -> List[dict]:
    return [e for e in evs if e["event"] == kind]


def copy_run(name: str, dst: Path, checkpoints: bool = True) -> Path:
    """A copy of fixture run ``name`` at ``dst / name`` (optionally without checkpoints)."""
    out = Path(dst) / name
    ignore = None if checkpoints else shutil.ignore_patterns("checkpoints")
    shutil.copytree(RUNS / name, out, ignore=ignore)
    return out


def doctor_log(run: Path, change: Callable[[List[dict]], List[dict]],
               renumber: bool = False) -> None:
    """Rewrite a run's log as ``change(events)`` returns it (``renumber``: seq 0, 1, 2, …)."""
    evs = change(events(run))
    if renumber:
        for i, ev in enumerate(evs):
            ev["seq"] = i
    (Path(run) / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evs))


def cells(line: str) -> List[str]:
    """The cells of one Markdown table line (escaped pipes stay inside a cell)."""
    return [c.strip() for c in _PIPE.split(line.strip())[1:-1]]


def md_table(text: str, heading: str) -> Tuple[List[str], List[List[str]]]:
    """Header and rows of the first Markdown table after the line ``heading``."""
    lines = text.splitlines()
    start = lines.index(heading)
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("|"):
            rows.append(cells(line))
        elif rows:
            break
    assert len(rows) >= 2, f"no table after {heading!r}"
    return rows[0], rows[2:]


def section(text: str, heading: str) -> str:
    lines = text.splitlines()
    start = lines.index(heading)
    level = heading.split()[0]
    end = next((i for i in range(start + 1, len(lines))
                if lines[i].startswith("#") and len(lines[i].split()[0]) <= len(level)),
               len(lines))
    return "\n".join(lines[start:end])


def verification(text: str) -> Dict[str, Tuple[str, str]]:
    """Verification row name → (mark, detail as a reader sees it)."""
    _, rows = md_table(text, "## Verification")
    return {plain(r[1]): (r[0], plain(r[2])) for r in rows}


def f2(v) -> str:
    return "--" if v is None else f"{v:.2f}"
