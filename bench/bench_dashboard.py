"""The dashboard's cost to a run (issue 14 item 11): the engine's images/s headless against
the same engine with a dashboard attached in a real terminal (tmux), and the dashboard's own
CPU while it follows the run and while nothing changes.

Each repetition starts the engine the way ``tuiprune watch CONFIG`` does (detached, output to
engine.log) on the demo model, for ``--states`` x ``--epochs``; headless and attached
repetitions alternate so drift and other load hit both alike, and medians are reported. The
engine's speed is the mean of its ``epoch_ended.images_per_s``; the dashboard's CPU is its
process's user+system time (``/proc/<pid>/stat``) over wall time. Idle is measured on a finished
run (nothing changes) and on a live run whose engine writes nothing (clock, liveness and the
tailer's polls only), ``--idle`` seconds each.

Targets: attached engine >= 98 % of headless images/s; dashboard idle <= 1 % of a core.
``--system-pane`` measures only what the system pane adds (issue 13): the dashboard follows a
synthetic log with ``system`` events, with the pane shown and hidden (``m``); target: it adds
<= 1 point of one core. Exit status 1 when a target is missed. ``--ui-root DIR`` runs the dashboard from another checkout
(e.g. the main branch, for a before/after comparison); the engine always runs from this one.

    .venv/bin/python bench/bench_dashboard.py [--reps 3] [--states 1] [--epochs 3] [--idle 10]
        [--train-size 4000] [--ui-root DIR] [--dashboard-only | --system-pane]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.pidfile import read_pidfile  # noqa: E402
from terminal import Terminal, cpu_pct, cpu_seconds  # noqa: E402
from tuiprune.launch import start_detached  # noqa: E402

TARGET_RATIO = 0.98
TARGET_IDLE_PCT = 1.0
TARGET_PANE_PCT = 1.0  # what the system pane may add, in points of one core


def events(run_dir: Path) -> List[dict]:
    """The run's events (read once it has ended)."""
    out = []
    for line in (run_dir / "events.jsonl").read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def dashboard(run_dir: Path, ui_root: Optional[Path]) -> Terminal:
    """``tuiprune watch RUN_DIR`` in a 120x40 tmux, from ``ui_root`` (default: this checkout)."""
    return Terminal(["watch", str(run_dir)], root=ui_root)


def shows(text: str) -> Callable[[str], bool]:
    return lambda screen: text in screen


def hide_system_pane(board: Terminal) -> None:
    board.keys("m")
    time.sleep(0.5)
    if "System" in board.screen():
        raise RuntimeError("m did not hide the system pane")


def one_run(tmp: Path, tag: str, sets: List[str], ui_root: Optional[Path]
            ) -> Tuple[float, Optional[float], Optional[float]]:
    """(engine images/s, dashboard CPU % while following, dashboard CPU % idle afterwards)."""
    run_dir = start_detached(ROOT / "configs" / "demo.toml",
                             [*sets, f"run.output_dir='{tmp}'", f"run.name='{tag}'"])
    engine = read_pidfile(run_dir)["pid"]
    board = dashboard(run_dir, ui_root) if ui_root is not None else None
    follow = idle = None
    try:
        t0 = time.monotonic()
        cpu0 = cpu_seconds(board.pid) if board else None
        while cpu_seconds(engine) is not None:  # reaped by launch's waiter thread on exit
            time.sleep(0.5)
        if board:
            follow = 100 * (cpu_seconds(board.pid) - cpu0) / (time.monotonic() - t0)
            board.wait_screen(shows("COMPLETED"))
            idle = cpu_pct(board.pid, 5)
    finally:
        if board:
            board.close()
        if cpu_seconds(engine) is not None:  # interrupted: stop the engine it started
            os.kill(engine, signal.SIGTERM)
    speeds = [e["images_per_s"] for e in events(run_dir) if e.get("event") == "epoch_ended"]
    return statistics.mean(speeds), follow, idle


def idle_live(tmp: Path, seconds: float, ui_root: Path) -> float:
    """Dashboard CPU % on a live run whose engine writes nothing."""
    src = next(p for p in sorted(tmp.iterdir()) if (p / "events.jsonl").is_file())
    run_dir = tmp / "quiet-live"
    run_dir.mkdir()
    lines = (src / "events.jsonl").read_text().splitlines(keepends=True)
    (run_dir / "events.jsonl").write_text("".join(lines[:-1]))  # no run_ended
    (run_dir / "config.toml").write_text((src / "config.toml").read_text())
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    from engine.pidfile import write_pidfile

    write_pidfile(run_dir, stand_in.pid)
    board = dashboard(run_dir, ui_root)
    try:
        board.wait_screen(shows("RUNNING"))
        time.sleep(2)  # past the first reads and draws
        return cpu_pct(board.pid, seconds)
    finally:
        board.close()
        stand_in.kill()
        stand_in.wait()


class SyntheticLog:
    """A synthetic RSST log (``tests/helpers/synthlog.py``) written into ``run_dir`` as a
    live engine would: a backlog, then a few events at a time; ``system`` events on demand."""

    def __init__(self, run_dir: Path) -> None:
        sys.path.insert(0, str(ROOT / "tests" / "helpers"))
        import synthlog
        import system_log

        self.synthlog, self.system_log = synthlog, system_log
        self.events = iter(synthlog.events("rsst", states=50, epochs=20, batches=100,
                                           name="follow"))
        self.rng = random.Random(0)
        self.last: dict = {}
        self.file = open(run_dir / "events.jsonl", "w")

    def write_until(self, stop) -> None:
        """Events up to and including the first for which ``stop(event)`` is true."""
        for ev in self.events:
            self.file.write(self.synthlog.line(ev))
            self.last = ev
            if stop(ev):
                break
        self.file.flush()

    def write_steps(self, n: int) -> None:
        """Events up to and including the ``n``-th ``batch`` or ``lambda`` event."""
        seen = [0]

        def enough(ev: dict) -> bool:
            seen[0] += ev["event"] in ("batch", "lambda")
            return seen[0] >= n

        self.write_until(enough)

    def write_sample(self) -> None:
        """A ``system`` event at the time of the last event."""
        last = self.last
        self.file.write(self.synthlog.line(self.system_log.system_event(
            last["time"], last.get("state", 0), last.get("epoch", 0), self.rng)))
        self.file.flush()


def follow_synthetic(tmp: Path, seconds: float, ui_root: Path,
                     system_every: Optional[float] = None, hide_system: bool = False) -> float:
    """Dashboard CPU % while it follows a log written at the engine's throttled rate (10
    ``batch`` and 10 ``lambda`` events a second, epochs of 100 batches): the dashboard's own
    cost, without an engine competing for the cores. ``system_every``: also a ``system``
    event every so many seconds (one is in the log from the start, so the system pane is
    shown); ``hide_system``: hide the pane with ``m`` first."""
    from engine.pidfile import write_pidfile

    run_dir = Path(tempfile.mkdtemp(prefix="synthetic-follow-", dir=tmp))
    log = SyntheticLog(run_dir)
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    write_pidfile(run_dir, stand_in.pid)
    try:
        log.write_until(lambda ev: ev["event"] == "batch" and ev["state"] == 1)
        if system_every:
            log.write_sample()
        board = dashboard(run_dir, ui_root)
        try:
            board.wait_screen(shows("System" if system_every else "RUNNING"))
            if hide_system:
                hide_system_pane(board)
            before, start = cpu_seconds(board.pid), time.monotonic()
            next_sample = start + (system_every or math.inf)
            while time.monotonic() - start < seconds:
                log.write_steps(2)  # every 0.1 s: 10 batch and 10 lambda events a second
                if time.monotonic() >= next_sample:
                    log.write_sample()
                    next_sample += system_every
                time.sleep(0.1)
            return 100 * (cpu_seconds(board.pid) - before) / (time.monotonic() - start)
        finally:
            board.close()
    finally:
        log.file.close()
        stand_in.kill()
        stand_in.wait()


def system_pane(tmp: Path, args) -> int:
    """The system pane's own cost: the dashboard following a synthetic log with ``system``
    events, pane shown against pane hidden (``m``), interleaved, at the engine's default
    sampling interval (10 s) and at 1 s (ten times as many samples)."""
    print(f"dashboard from {args.ui_root}, following a synthetic log for {args.idle:g} s per "
          f"measurement, {args.reps} interleaved repetitions; {os.cpu_count()} cores, load "
          f"average {os.getloadavg()[0]:.2f}")
    worst = 0.0
    for every in (10.0, 1.0):
        cpu = {False: [], True: []}
        for rep in range(args.reps):
            for hide in ((False, True) if rep % 2 == 0 else (True, False)):
                cpu[hide].append(follow_synthetic(tmp, args.idle, args.ui_root, every, hide))
        shown, hidden = statistics.median(cpu[False]), statistics.median(cpu[True])
        worst = max(worst, shown - hidden)
        print(f"  a system event every {every:g} s: CPU {shown:.2f} % with the pane shown "
              f"({', '.join(f'{v:.2f}' for v in cpu[False])}), {hidden:.2f} % hidden "
              f"({', '.join(f'{v:.2f}' for v in cpu[True])}): the pane adds "
              f"{shown - hidden:+.2f} points of one core (target <= {TARGET_PANE_PCT})")
    print(f"load average afterwards {os.getloadavg()[0]:.2f}")
    ok = worst <= TARGET_PANE_PCT
    print("all targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--states", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-size", type=int, default=4000, help="images per epoch")
    ap.add_argument("--idle", type=float, default=10.0)
    ap.add_argument("--ui-root", type=Path, default=ROOT)
    ap.add_argument("--dashboard-only", action="store_true",
                    help="skip the engine runs: only the dashboard's own CPU")
    ap.add_argument("--system-pane", action="store_true",
                    help="only what the system pane adds: shown against hidden (m)")
    args = ap.parse_args()
    if args.system_pane:
        with tempfile.TemporaryDirectory(prefix="tuiprune-bench-dash-") as tmp:
            return system_pane(Path(tmp), args)
    if args.dashboard_only:
        with tempfile.TemporaryDirectory(prefix="tuiprune-bench-dash-") as tmp:
            return dashboard_only(Path(tmp), args)
    sets = [f"prune.states={args.states}", f"train.epochs={args.epochs}",
            f"data.train_size={args.train_size}"]
    print(f"demo model, {args.states} state(s) x {args.epochs} epochs per run, {args.reps} "
          f"interleaved repetitions; dashboard from {args.ui_root}; {os.cpu_count()} cores")
    headless, attached, follow, idle = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="tuiprune-bench-dash-") as tmp:
        tmp = Path(tmp)
        for rep in range(args.reps):
            for with_ui in ((False, True) if rep % 2 == 0 else (True, False)):
                speed, cpu_follow, cpu_idle = one_run(
                    tmp, f"r{rep}-{'ui' if with_ui else 'headless'}", sets,
                    args.ui_root if with_ui else None)
                (attached if with_ui else headless).append(speed)
                if with_ui:
                    follow.append(cpu_follow)
                    idle.append(cpu_idle)
                print(f"  rep {rep} {'dashboard' if with_ui else 'headless '}: {speed:7.1f} "
                      f"img/s" + (f", dashboard CPU {cpu_follow:.2f} % following, "
                                  f"{cpu_idle:.2f} % on the finished run" if with_ui else ""),
                      flush=True)
        live = idle_live(tmp, args.idle, args.ui_root)
        synthetic = follow_synthetic(tmp, args.idle, args.ui_root)
    h, a = statistics.median(headless), statistics.median(attached)
    print(f"engine images/s, median: headless {h:.1f}, with a dashboard {a:.1f} "
          f"(ratio {a / h:.3f}, slowdown {100 * (1 - a / h):+.1f} %; target ratio >= "
          f"{TARGET_RATIO})")
    print(f"dashboard CPU, median: following {statistics.median(follow):.2f} %, idle on a "
          f"finished run {statistics.median(idle):.2f} %, idle on a quiet live run {live:.2f} % "
          f"(target idle <= {TARGET_IDLE_PCT} %)")
    print(f"dashboard CPU following a synthetic log at the engine's event rate: "
          f"{synthetic:.2f} %")
    ok = a / h >= TARGET_RATIO and max(statistics.median(idle), live) <= TARGET_IDLE_PCT
    print("all targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


def dashboard_only(tmp: Path, args) -> int:
    """The dashboard's own CPU: following a synthetic log, idle on a finished fixture run
    and on a quiet live one (no engine runs: quick, and steady on a busy machine)."""
    fixture = ROOT / "tests" / "fixtures" / "runs" / "rsst_global"
    board = dashboard(fixture, args.ui_root)
    try:
        board.wait_screen(shows("COMPLETED"))
        time.sleep(2)
        finished = cpu_pct(board.pid, args.idle)
    finally:
        board.close()
    (tmp / "src").mkdir()
    for name in ("events.jsonl", "config.toml"):
        (tmp / "src" / name).write_bytes((fixture / name).read_bytes())
    live = idle_live(tmp, args.idle, args.ui_root)
    synthetic = follow_synthetic(tmp, args.idle, args.ui_root)
    print(f"dashboard from {args.ui_root}: CPU following a synthetic log at the engine's "
          f"event rate {synthetic:.2f} %, idle on a finished run {finished:.2f} %, idle on a "
          f"quiet live run {live:.2f} % (target idle <= {TARGET_IDLE_PCT} %)")
    return 0 if max(finished, live) <= TARGET_IDLE_PCT else 1


if __name__ == "__main__":
    sys.exit(main())
