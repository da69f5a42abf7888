"""Run every benchmark in turn (``make bench``); exit 1 if any missed its target or failed.

Timings are only meaningful on a quiet machine: each script prints what it measured and how.
``bench_gpu.py`` runs at full size on a CUDA device, and as its small ``--quick`` check on a
machine without one (a full-size ViT-S run on a CPU takes hours and measures nothing useful).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def scripts() -> list:
    import torch

    gpu = [] if torch.cuda.is_available() else ["--device", "cpu", "--quick"]
    return [["bench_engine.py"], ["bench_runs.py"], ["bench_gpu.py", *gpu], ["bench_ddp.py"],
            ["bench_compact.py"], ["bench_reducer.py"], ["bench_dashboard.py"],
            ["bench_system.py"], ["bench_report.py"], ["bench_runlist.py"],
            ["bench_browser.py"]]


def main() -> int:
    failed = []
    for script, *args in scripts():
        print(f"\n######## {script} {' '.join(args)}", flush=True)
        if subprocess.run([sys.executable, str(HERE / script), *args]).returncode:
            failed.append(script)
    if failed:
        print(f"\nmissed a target or failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
