"""Reading the ``export.json`` that ``tuiprune export`` writes (torch-free): the report and the
export command's summary both show it through these functions.

A document read from disk may hold anything: every value goes through ``tuiprune.format``,
which turns what is missing or of the wrong type into its "no value" marker.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Tuple

from engine.rundir import export_docs
from tuiprune import format as fmt

EXPORT_FORMAT = 1
DEVICES = ("cpu", "cuda")


def read_exports(run_dir: Path) -> List[Tuple[str, Dict[str, Any]]]:
    """``(directory relative to the run, document)`` for every readable ``export.json`` of a
    run directory; unreadable or non-object files are left out."""
    out = []
    for path in export_docs(run_dir):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            continue
        if isinstance(doc, dict):
            out.append((str(path.parent.relative_to(run_dir)), doc))
    return out


def section(doc: Dict[str, Any], key: str) -> Dict[str, Any]:
    """``doc[key]`` when it is an object, else an empty one."""
    value = doc.get(key) if isinstance(doc, dict) else None
    return value if isinstance(value, dict) else {}


def latency_rows(latency: Any) -> List[List[str]]:
    """``[label, before ms, after ms, speed-up]`` per device and batch size."""
    rows = []
    latency = latency if isinstance(latency, dict) else {}
    for device in DEVICES:
        info = section(latency, device)
        for batch, r in section(info, "batches").items():
            r = r if isinstance(r, dict) else {}
            label = f"{device} batch {fmt.printable(batch, newlines=False)}"
            if device == "cpu" and fmt.finite(info.get("threads")) is not None:
                label += f" ({fmt.count(info['threads'])} threads)"
            rows.append([label + " ms", fmt.number(r.get("before_ms")),
                         fmt.number(r.get("after_ms")), fmt.number(r.get("speedup"))])
    return rows
