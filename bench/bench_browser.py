"""The run browser and the compare screen (issue 12): how fast the list opens on many runs,
and what the compare screen costs while it follows live runs.

1. **First frame on 200 finished runs.** ``bench_runlist.make_runs`` writes 200 run
   directories whose logs hold 10k lines each (RSST and Refill, from
   ``tests/helpers/synthlog.py``). ``tuiprune watch DIR`` starts in a private tmux at 120x40;
   the time from starting the command to the screen showing the whole list (its header says
   ``200 runs: 200 completed``) is the first frame (target <= 1.5 s; median of ``--reps``, a
   new process each time: interpreter and Textual start-up included). Then the browser's CPU
   while it sits on the list (it lists the directory again every second) over ``--idle`` s.
2. **Compare screen following 6 live runs.** A sweep directory (``engine.sweepdir``) of 6
   members, each a synthetic RSST run in state 1, its engine a stand-in process; this script
   appends to every log at the engine's throttled rate (10 ``batch`` and 10 ``lambda`` events
   a second per run, epochs of 100 batches, so an ``epoch_ended`` every 10 s).
   ``tuiprune watch SWEEP --compare`` follows them in a 120x40 tmux; its process's user+system
   CPU (``/proc/<pid>/stat``) over ``--follow`` seconds is the cost (target <= 5 % of one core).

Exit status 1 when a target is missed. The machine's load average is printed with the
figures: timings on a shared, loaded machine are upper bounds.

    .venv/bin/python bench/bench_browser.py [--runs 200] [--lines 10000] [--reps 3]
        [--idle 10] [--follow 30] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench_runlist import make_runs  # noqa: E402
from engine.pidfile import write_pidfile  # noqa: E402
from engine.sweepdir import write_sweep  # noqa: E402
from helpers import synthlog  # noqa: E402
from terminal import Terminal, cpu_pct  # noqa: E402

FIRST_FRAME_S = 1.5
COMPARE_PCT = 5.0
COMPARED = 6


def first_frames(out: Path, runs: int, reps: int, idle: float) -> tuple:
    """(first-frame seconds per repetition, the browser's idle CPU %)."""
    whole = f"{runs} runs: {runs} completed"
    times = []
    for rep in range(reps):
        term = Terminal(["watch", str(out)])
        try:
            times.append(term.wait_screen(lambda s: whole in s))
            if rep == reps - 1:
                time.sleep(2)
                idle_pct = cpu_pct(term.pid, idle)
        finally:
            term.close()
    return times, idle_pct


def live_sweep(tmp: Path, stand_in: int):
    """A sweep of :data:`COMPARED` members whose logs stop in state 1; per member the rest of
    its events, to be appended."""
    base = {"run": {"name": "bench", "output_dir": str(tmp)},
            "prune": {"method": "rsst", "states": 50}}
    sweep = write_sweep(tmp / "bench-sweep", "bench", {"run.seed": list(range(COMPARED))},
                        base, time.time())
    rests = []
    for i, member in enumerate(sweep.members):
        member.run_dir.mkdir()
        evs = iter(synthlog.events("rsst", states=50, epochs=20, batches=100,
                                   name=member.name, seed=i))
        with open(member.run_dir / "events.jsonl", "w") as f:
            for ev in evs:  # up to state 1's first batch at once
                f.write(synthlog.line(ev))
                if ev["event"] == "batch" and ev["state"] == 1:
                    break
        write_pidfile(member.run_dir, stand_in)
        rests.append(evs)
    return sweep.path, [m.run_dir / "events.jsonl" for m in sweep.members], rests


def follow_cost(tmp: Path, seconds: float) -> tuple:
    """(seconds to the compare screen's first full frame, its CPU % following 6 runs)."""
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    try:
        sweep, logs, rests = live_sweep(tmp, stand_in.pid)
        files = [open(p, "a") for p in logs]
        term = Terminal(["watch", str(sweep), "--compare"])
        try:
            shown = term.wait_screen(lambda s: "compare 6 runs" in s and "State 0 per" in s)
            time.sleep(2)

            def write_tick() -> None:  # 0.1 s of six engines: a batch and a λ event each
                for f, evs in zip(files, rests):
                    written = 0
                    for ev in evs:
                        f.write(synthlog.line(ev))
                        written += ev["event"] in ("batch", "lambda")
                        if written >= 2:
                            break
                    f.flush()
                time.sleep(0.1)

            return shown, cpu_pct(term.pid, seconds, write_tick)
        finally:
            term.close()
            for f in files:
                f.close()
    finally:
        stand_in.kill()
        stand_in.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--lines", type=int, default=10_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--idle", type=float, default=10.0)
    ap.add_argument("--follow", type=float, default=30.0)
    ap.add_argument("--keep", type=Path, default=None, help="runs generated here and kept "
                    "(reused when they are there)")
    args = ap.parse_args()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} "
          f"{os.getloadavg()[1]:.1f} {os.getloadavg()[2]:.1f} (1, 5, 15 min) at the start")
    tmp = Path(tempfile.mkdtemp(prefix="bench-browser-"))
    out = args.keep or tmp / "runs"
    try:
        if not (out.is_dir() and len(list(out.iterdir())) == args.runs):
            t = time.perf_counter()
            per_log = make_runs(out, args.runs, args.lines)
            print(f"{args.runs} runs of >= {per_log:,} lines generated in "
                  f"{time.perf_counter() - t:.1f} s")
        times, idle = first_frames(out, args.runs, args.reps, args.idle)
        print(f"browser, first frame with all {args.runs} runs: median "
              f"{statistics.median(times):.2f} s ({', '.join(f'{t:.2f}' for t in times)}; "
              f"target <= {FIRST_FRAME_S} s)")
        print(f"browser CPU sitting on the list (listed again every second): {idle:.2f} % "
              f"over {args.idle:.0f} s")
        shown, follow = follow_cost(tmp, args.follow)
        print(f"compare screen: first frame of 6 live runs after {shown:.2f} s; CPU following "
              f"them (10 batch + 10 lambda events/s each): {follow:.2f} % of one core over "
              f"{args.follow:.0f} s (target <= {COMPARE_PCT} %)")
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
        ok = statistics.median(times) <= FIRST_FRAME_S and follow <= COMPARE_PCT
        print("all targets met" if ok else "TARGET MISSED")
        return 0 if ok else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
