"""Run table scale (issue 12): list 200 finished runs whose logs hold 10k lines each.

Target: ``tuiprune.runlist.list_runs`` — what ``tuiprune ls`` prints and the dashboard's run
browser shows first — returns all 200 rows in <= 1.5 s, cold (each log read for the first
time by this process; the files are in the OS page cache, as they are right after a run or a
first ``ls``). Also timed: a second listing that reuses the rows (what a live browser does every
second), and ``tuiprune ls DIR`` end to end (a new process: interpreter start included).
Every row is checked against the whole-log fold (``engine.runlog.read_log``) so the fast path
cannot be fast by being wrong. Exit status 1 when the target is missed or a row is wrong.

The logs are generated (``tests/helpers/synthlog.py``: RSST and Refill, one ``batch`` event per
step, RSST also one ``lambda`` event), half of them with a config that differs in two keys.

    .venv/bin/python bench/bench_runlist.py [--runs 200] [--lines 10000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from helpers import synthlog  # noqa: E402
from engine.runlog import read_log  # noqa: E402
from tuiprune.runlist import list_runs  # noqa: E402

TARGET_S = 1.5


def make_runs(out: Path, runs: int, lines: int) -> int:
    """``runs`` run directories of about ``lines`` lines each; returns the lines of one."""
    texts = {}
    for method in ("rsst", "refill"):
        batches = 10
        while True:  # the fewest batches per epoch that give ``lines`` lines
            evs = list(synthlog.events(method, states=3, epochs=3, batches=batches,
                                       name="bench"))
            if len(evs) >= lines:
                break
            batches = max(batches + 1, int(batches * lines / len(evs)))
        texts[method] = evs
    for i in range(runs):
        method = "rsst" if i % 2 else "refill"
        run_dir = out / f"bench-{i:03d}"
        run_dir.mkdir(parents=True)
        evs = [dict(e) for e in texts[method]]
        evs[0] = dict(evs[0], config={"run": {"name": "bench", "seed": i % 3},
                                      "prune": {"method": method, "sorting": "global"}})
        for e in evs:
            e["time"] = e["time"] + i * 10_000
        (run_dir / "events.jsonl").write_text("".join(synthlog.line(e) for e in evs))
    return min(len(t) for t in texts.values())


def check(rows, out: Path) -> int:
    """Rows that disagree with the whole-log fold."""
    wrong = 0
    for row in rows:
        log = read_log(row.path / "events.jsonl")
        expected = (log.status, log.states_done, log.states_total, log.best_val_acc,
                    log.final_sparsity, log.images_per_s, log.started_time, log.method)
        got = (row.status, row.states_done, row.states_total, row.best_val_acc,
               row.final_sparsity, row.images_per_s, row.started, row.method)
        if expected != got:
            wrong += 1
            print(f"  {row.name}: expected {expected}, got {got}")
    return wrong


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--lines", type=int, default=10_000)
    ap.add_argument("--keep", type=Path, default=None, help="generate here and keep it")
    args = ap.parse_args()
    out = args.keep or Path(tempfile.mkdtemp(prefix="bench-runlist-"))
    try:
        t = time.perf_counter()
        per_log = make_runs(out, args.runs, args.lines)
        size = sum(p.stat().st_size for p in out.glob("*/events.jsonl"))
        print(f"{args.runs} runs, >= {per_log:,} lines per log, {size / 1e6:.0f} MB in all, "
              f"generated in {time.perf_counter() - t:.1f} s")

        t = time.perf_counter()
        rows = list_runs(out)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        list_runs(out, known={r.path: r for r in rows})
        again = time.perf_counter() - t
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        t = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "tuiprune", "ls", str(out), "--json"],
                              env=env, capture_output=True, text=True)
        whole = time.perf_counter() - t
        listed = len(json.loads(done.stdout)) if done.returncode == 0 else -1

        wrong = check(rows, out)
        print(f"list_runs, first time:       {cold:.3f} s for {len(rows)} rows "
              f"(target <= {TARGET_S} s)")
        print(f"list_runs, rows reused:      {again:.3f} s")
        print(f"tuiprune ls DIR --json:      {whole:.3f} s end to end ({listed} rows)")
        print(f"rows that disagree with engine.runlog.read_log: {wrong}")
        return 0 if cold <= TARGET_S and wrong == 0 and listed == len(rows) else 1
    finally:
        if args.keep is None:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
