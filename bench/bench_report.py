"""``tuiprune report`` on a 1 M-line log with every figure (issue 13): time and peak memory.

Target: the whole command (start-up, reading the log, five figures, Markdown, writing) in
<= 10 s, and memory that does not grow with the log: the same command on a log a quarter as
long must peak within 20 MB of it.

The log is generated: ``tests/helpers/synthlog.py`` (RSST, 20 states x 40 epochs, one ``batch``
and one ``lambda`` event per optimizer step, 650 batches per epoch to pass 1 M lines) with a
``system`` event every 10 s of its clock and at each epoch end (``tests/system_log.py``).

    .venv/bin/python bench/bench_report.py [--states 20] [--epochs 40] [--batches 650]
        [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from helpers import synthlog  # noqa: E402
from helpers.system_log import with_system  # noqa: E402

TARGET_S = 10.0
TARGET_GROWTH_MB = 20.0


def generate(run_dir: Path, states: int, epochs: int, batches: int) -> int:
    t = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = 0
    with open(run_dir / "events.jsonl", "w", encoding="utf-8") as f:
        for ev in with_system(synthlog.events("rsst", states=states, epochs=epochs,
                                              batches=batches, name="bench"), every=10.0):
            f.write(synthlog.line(ev))
            lines += 1
    size = (run_dir / "events.jsonl").stat().st_size
    print(f"log: {lines:,} lines, {size / 1e6:.0f} MB ({states} states x {epochs} epochs x "
          f"{batches} batches, system events every 10 s), generated in "
          f"{time.perf_counter() - t:.1f} s", flush=True)
    return lines


def run_report(run_dir: Path, out: Path) -> tuple:
    """(wall seconds, CPU seconds, peak RSS in MB) of ``tuiprune report RUN --out DIR``,
    in a child process of its own (``ru_maxrss`` of a fresh interpreter per call)."""
    probe = ("import resource, subprocess, sys, time\n"
             "t = time.perf_counter()\n"
             "r = subprocess.run([sys.executable, '-m', 'tuiprune', 'report', sys.argv[1], "
             "'--out', sys.argv[2]], stdout=subprocess.DEVNULL)\n"
             "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
             "print(time.perf_counter() - t, u.ru_utime + u.ru_stime, u.ru_maxrss / 1024, "
             "r.returncode)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", probe, str(run_dir), str(out)],
                         capture_output=True, text=True, env=env, check=True)
    wall, cpu, peak, code = res.stdout.split()
    if code != "0":
        raise SystemExit(f"tuiprune report failed with status {code}")
    return float(wall), float(cpu), float(peak)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--states", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batches", type=int, default=650)
    ap.add_argument("--keep", type=Path, help="keep the generated runs in this folder")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-report-"))
    work = args.keep or tmp
    try:
        big, small = work / "long", work / "quarter"
        lines = generate(big, args.states, args.epochs, args.batches)
        generate(small, args.states, args.epochs, max(1, args.batches // 4))
        print(f"load average before timing: {os.getloadavg()[0]:.2f} on {os.cpu_count()} "
              f"cores", flush=True)
        wall, cpu, peak = run_report(big, work / "out-long")
        _, _, peak_small = run_report(small, work / "out-quarter")
        figures = sorted(p.name for p in (work / "out-long").glob("*.png"))
        print(f"report on {lines:,} lines: {wall:.1f} s wall, {cpu:.1f} s CPU, peak RSS "
              f"{peak:.0f} MB (a quarter of the log: {peak_small:.0f} MB); "
              f"figures: {', '.join(figures)}")
        ok_time = wall <= TARGET_S
        ok_mem = peak - peak_small <= TARGET_GROWTH_MB
        print(f"time {'ok' if ok_time else 'MISSED'} (target <= {TARGET_S:.0f} s); memory "
              f"{'bounded' if ok_mem else 'GROWS'} (+{peak - peak_small:.0f} MB for 4x the "
              f"lines, target <= {TARGET_GROWTH_MB:.0f} MB)")
        return 0 if ok_time and ok_mem and len(figures) == 5 else 1
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.exit(main())
