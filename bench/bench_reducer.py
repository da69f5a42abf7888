"""Dashboard scale: reducer speed, bounded memory, and replay of a >= 1 M-line log (issue 4).

Targets: the reducer ingests >= 50,000 events/s; its view model stays bounded on a
20-state x 40-epoch log of >= 1 M lines; ``tuiprune replay LOG --speed 0`` shows the final
screen in <= 10 s, and its first frame within 1.5 s; ``tuiprune watch RUN_DIR`` shows "engine
lost" within 2 s of the engine's ``kill -9``. Exit status 1 when a target is missed.

The log is generated (``tests/helpers/synthlog.py``, RSST, one ``batch`` and one ``lambda`` event
per optimizer step). The issue's 20 x 40 x 400 shape gives 0.63 M lines, so the default uses
650 batches per epoch to pass 1 M lines.

    .venv/bin/python bench/bench_reducer.py [--states 20] [--epochs 40] [--batches 650]
        [--no-terminal] [--keep DIR]
"""

from __future__ import annotations

import argparse
import gc
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from helpers import synthlog  # noqa: E402
from engine.logread import CHUNK_BYTES, LineSplitter, iter_chunks  # noqa: E402
from terminal import Terminal  # noqa: E402
from tuiprune.dashboard.reducer import Reducer  # noqa: E402

TARGET_EVENTS_S = 50_000
TARGET_FINAL_S = 10.0
TARGET_FIRST_S = 1.5
TARGET_LOST_S = 2.0
TARGET_VIEW_BYTES = 10e6
FIXTURE = ROOT / "tests" / "fixtures" / "runs" / "rsst_global"
SAMPLE_LINES = 200_000


def generate(run_dir: Path, states: int, epochs: int, batches: int) -> int:
    log = run_dir / "events.jsonl"
    t = time.perf_counter()
    lines = 0
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as f:
        for ev in synthlog.events("rsst", states=states, epochs=epochs, batches=batches,
                                  name="bench"):
            f.write(synthlog.line(ev))
            lines += 1
    print(f"log: {lines:,} lines, {log.stat().st_size / 1e6:.0f} MB "
          f"({states} states x {epochs} epochs x {batches} batches), "
          f"generated in {time.perf_counter() - t:.1f} s")
    return lines


def reducer_speed(log: Path) -> float:
    events = []
    for chunk in iter_chunks(log):
        events.extend(chunk.events)
        if len(events) >= SAMPLE_LINES:
            break
    events = events[:SAMPLE_LINES]
    best = 0.0
    for _ in range(3):
        reducer = Reducer()
        t = time.perf_counter()
        reducer.apply_all(events)
        best = max(best, len(events) / (time.perf_counter() - t))
    print(f"reducer: {best:,.0f} events/s on the first {len(events):,} parsed events "
          f"(target >= {TARGET_EVENTS_S:,})")
    return best


def streaming(log: Path, lines: int) -> None:
    reducer = Reducer()
    t = time.perf_counter()
    for chunk in iter_chunks(log):
        reducer.apply_chunk(chunk)
    dt = time.perf_counter() - t
    print(f"read + parse + reduce: {lines / dt:,.0f} lines/s, {dt:.1f} s for the whole log")


def memory(log: Path, lines: int) -> bool:
    """Size of the view model (traced allocations still alive between chunks, when no parsed
    event is referenced any more) as the log goes by."""
    marks = [lines * f for f in (0.1, 0.5, 1.0)]
    sizes = []
    reducer = Reducer()
    splitter = LineSplitter()
    seen = 0
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    with open(log, "rb") as f:
        while True:
            data = f.read(CHUNK_BYTES)
            events = splitter.feed(data).events
            reducer.apply_all(events)
            seen += len(events)
            del events
            while marks and (seen >= marks[0] or not data):
                marks.pop(0)
                gc.collect()
                sizes.append(tracemalloc.get_traced_memory()[0] - base)
            if not data:
                break
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    view = reducer.view
    points = sum(len(st.points) for st in view.states)
    lam = sum(len(st.lambdas) for st in view.states)
    print("view model memory: " + ", ".join(f"{size / 1e6:.2f} MB after {f:.0%}" for size, f
                                             in zip(sizes, (0.1, 0.5, 1.0)))
          + f" of the log; peak {peak / 1e6:.0f} MB with a 1 MiB chunk being parsed")
    print(f"  kept: {points} epoch points (all), {lam} lambda points over "
          f"{len(view.states)} states, {len(view.progress.loss)} batch points, "
          f"{len(view.log)} log entries")
    # What may grow: a few hundred points per state and one point per epoch; never per batch.
    bounded = sizes[-1] < TARGET_VIEW_BYTES and all(len(st.lambdas) <= 256
                                                    for st in view.states)
    print(f"  bounded: {'yes' if bounded else 'NO'} ({sizes[-1] / lines:.1f} bytes per line of "
          f"log; target: under {TARGET_VIEW_BYTES / 1e6:.0f} MB whatever the batch count)")
    return bounded


def _secs(value: Optional[float]) -> str:
    return "never" if value is None else f"{value:.2f} s"


def liveness_in_terminal() -> Optional[float]:
    """Seconds from ``kill -9`` of a (stand-in) engine to "ENGINE LOST" on a watching screen."""
    from engine.pidfile import write_pidfile

    run = Path(tempfile.mkdtemp(prefix="tuiprune-bench-lost-"))
    lines = (FIXTURE / "events.jsonl").read_text().splitlines(keepends=True)
    (run / "events.jsonl").write_text("".join(lines[:-1]))
    (run / "engine.log").write_text("training...\n")
    engine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    write_pidfile(run, engine.pid)
    try:
        with Terminal(["watch", str(run)], size=(100, 30)) as term:
            term.seen(lambda s: "RUNNING" in s, 30)
            engine.kill()
            engine.wait()
            lost = term.seen(lambda s: "ENGINE LOST" in s, 10, since=time.monotonic())
    finally:
        engine.kill()
        shutil.rmtree(run, ignore_errors=True)
    print(f"watch: engine killed -> ENGINE LOST on screen in {_secs(lost)} "
          f"(target <= {TARGET_LOST_S} s)")
    return lost


def replay_in_terminal(run_dir: Path) -> Tuple[Optional[float], Optional[float]]:
    """Seconds from starting ``tuiprune replay --speed 0`` in tmux to its first frame and to
    the final screen."""
    with Terminal(["replay", str(run_dir), "--speed", "0"]) as term:
        first = term.seen(lambda s: "tuiprune" in s and "States" in s, 30)
        final = term.seen(lambda s: "COMPLETED" in s and "replay: end " in s and "L11" in s, 60)
    print(f"replay --speed 0 in a 120x40 tmux: first frame {_secs(first)} (target <= "
          f"{TARGET_FIRST_S} s), final screen {_secs(final)} (target <= {TARGET_FINAL_S} s)")
    return first, final


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--states", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batches", type=int, default=650)
    ap.add_argument("--no-terminal", action="store_true", help="skip the tmux replay")
    ap.add_argument("--keep", type=Path, help="write the log into this directory and keep it")
    args = ap.parse_args()
    tmp = None
    if args.keep:
        run_dir = args.keep
    else:
        tmp = tempfile.mkdtemp(prefix="tuiprune-bench-")
        run_dir = Path(tmp) / "bench-run"
    try:
        lines = generate(run_dir, args.states, args.epochs, args.batches)
        log = run_dir / "events.jsonl"
        ok = reducer_speed(log) >= TARGET_EVENTS_S
        streaming(log, lines)
        ok &= memory(log, lines)
        if not args.no_terminal and shutil.which("tmux"):
            first, final = replay_in_terminal(run_dir)
            ok &= first is not None and first <= TARGET_FIRST_S
            ok &= final is not None and final <= TARGET_FINAL_S
            lost = liveness_in_terminal()
            ok &= lost is not None and lost <= TARGET_LOST_S
        print("all targets met" if ok else "TARGET MISSED")
        return 0 if ok else 1
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
