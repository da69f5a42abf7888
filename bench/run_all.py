"""Run every benchmark in turn (``make bench``); exit 1 if any missed its target.

Timings are only meaningful on a quiet machine: each script prints what it measured and how.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["bench_engine.py", "bench_runs.py", "bench_compact.py", "bench_reducer.py",
           "bench_dashboard.py"]


def main() -> int:
    failed = []
    for script in SCRIPTS:
        print(f"\n######## {script}", flush=True)
        if subprocess.run([sys.executable, str(HERE / script)]).returncode:
            failed.append(script)
    if failed:
        print(f"\nmissed a target or failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
