"""The sweep driver: runs a sweep's members, N at a time, each an ordinary ``tuiprune run``
process in its own session (torch-free).

- A member with no directory starts: its ``config.toml`` (the base config with its values) is
  written, then ``tuiprune run CONFIG --run-dir MEMBER`` runs it.
- A member that stopped, failed or was lost resumes: ``tuiprune run --resume MEMBER``.
- A completed member is skipped; one whose engine is alive (a driver before this one started
  it) is waited for.

The driver holds the sweep directory's lock (one driver per sweep) and records itself in its
``engine.pid``. SIGTERM or SIGINT (``tuiprune stop SWEEP_DIR``, Ctrl-C): no new member starts
and each running member gets one SIGTERM (it checkpoints and ends ``stopped``); a second
signal is passed on again (the members abort at once, as a second Ctrl-C does to a run). A
member that fails does not stop the others. Each member's output goes to its ``engine.log``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from engine.config import dumps, resolve
from engine.errors import EXIT_COMPLETED, EXIT_FAILED, EXIT_STOPPED, UserError
from engine.lock import RunLock
from engine.pidfile import (engine_alive, read_pidfile, remove_pidfile, request_stop,
                            write_pidfile)
from engine.rundir import CONFIG_FILE, ENGINE_LOG
from engine.sweepdir import Member, Sweep, member_config
from tuiprune.format import clock, duration, pct, printable
from tuiprune.launch import spawn_detached
from tuiprune.runlist import sweep_rows
from tuiprune.runrow import RunRow, read_row, why
from tuiprune.sweep_slots import Slots

POLL_S = 0.2


@dataclass
class Running:
    """A member being run: by a process of ours (``proc``) or adopted (``proc`` None)."""

    member: Member
    slot: int
    pid: int
    proc: Optional[subprocess.Popen] = None
    signalled: int = 0
    since: float = 0.0


def catches_sigterm(pid: int) -> bool:
    """Whether process ``pid`` has its own SIGTERM handler yet (``SigCgt`` in
    ``/proc/<pid>/status``). Before it has, a SIGTERM would kill a starting ``tuiprune run``
    without a word, so the driver waits. True where this cannot be told."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    except (OSError, ValueError, IndexError):
        pass
    return True


class Driver:
    """Runs ``sweep`` with ``slots``; :meth:`run` returns 0 (every member completed), 1 (a
    member did not) or 3 (stopped), and leaves the members' rows in ``rows``."""

    def __init__(self, sweep: Sweep, slots: Slots) -> None:
        self.sweep, self.slots = sweep, slots
        self.running: Dict[str, Running] = {}
        self.signals = 0
        self.stopped_by = ""
        self.rows: List[RunRow] = []

    def say(self, text: str) -> None:
        try:
            print(f"{clock(time.time())} {printable(text)}", flush=True)
        except OSError:
            pass  # the terminal is gone: the members and their logs go on

    # ------------------------------------------------------------------ the whole sweep
    def run(self) -> int:
        lock = RunLock(self.sweep.path).acquire()  # one driver per sweep
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        write_pidfile(self.sweep.path)  # `tuiprune stop` finds it only once it can take it
        try:
            self._loop(self._todo())
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
            remove_pidfile(self.sweep.path)
            lock.release()
        self.rows = sweep_rows(self.sweep)
        if self.signals:
            self.say(f"sweep stopped ({self.stopped_by}); finish it with `tuiprune sweep "
                     f"--resume {self.sweep.path}`")
            return EXIT_STOPPED
        if all(r.status == "completed" for r in self.rows):
            self.say("sweep completed")
            return EXIT_COMPLETED
        self.say(f"sweep ended, not every member completed; after a fix, run them again with "
                 f"`tuiprune sweep --resume {self.sweep.path}`")
        return EXIT_FAILED

    def _on_signal(self, signum, _frame) -> None:
        self.signals += 1
        self.stopped_by = self.stopped_by or signal.Signals(signum).name

    def _todo(self) -> List[Member]:
        """The members to run, in order; adopts those whose engine is alive."""
        todo = []
        for member in self.sweep.members:
            if not member.run_dir.is_dir():
                todo.append(member)
                continue
            row = read_row(member.run_dir)
            if row.status == "completed":
                self.say(f"{member.name}: completed before, skipped")
            elif row.status == "live" and engine_alive(member.run_dir):
                pid = read_pidfile(member.run_dir)["pid"]
                self.running[member.name] = Running(member, self._free_slot(), pid,
                                                    since=time.time())
                self.say(f"{member.name}: already running (pid {pid}), waiting for it")
            elif row.status == "live":
                self.say(f"{member.name}: runs on another host ({row.message}), skipped")
            else:
                todo.append(member)
        return todo

    def _loop(self, todo: List[Member]) -> None:
        while True:
            while not self.signals and todo and len(self.running) < self.slots.count:
                self._start(todo.pop(0))
            if self.signals:
                self._pass_on_stop()
            for name, run in list(self.running.items()):
                code = self._exit_code(run)
                if code is not False:
                    del self.running[name]
                    self._ended(run, code)
            if not self.running and (self.signals or not todo):
                return
            time.sleep(POLL_S)

    # ------------------------------------------------------------------ one member
    def _free_slot(self) -> int:
        taken = {r.slot for r in self.running.values()}
        return next(i for i in range(self.slots.count + len(taken) + 1) if i not in taken)

    def _start(self, member: Member) -> None:
        slot = self._free_slot()
        try:
            args, fresh = self._command(member)
            proc = spawn_detached(args, member.run_dir / ENGINE_LOG,
                                  env=dict(os.environ, **self.slots.env(slot)))
        except (OSError, UserError) as exc:  # disk full, a config edited into nonsense
            self.say(f"{member.name}: could not start: {exc}")
            return
        if fresh:  # a resume checks that no engine runs its directory: it writes its own
            write_pidfile(member.run_dir, proc.pid)
        self.running[member.name] = Running(member, slot, proc.pid, proc, since=time.time())
        where = self.slots.describe(slot)
        self.say(f"{member.name}: {'started' if fresh else 'resuming'} (pid {proc.pid}"
                 f"{', ' + where if where else ''})")

    def _command(self, member: Member) -> Tuple[List[str], bool]:
        """``tuiprune`` arguments that run the member, and whether it starts afresh (its
        ``config.toml``, the base config with its values, is written first)."""
        run_dir = member.run_dir
        if (run_dir / CONFIG_FILE).is_file():
            return ["run", "--resume", str(run_dir)], False
        cfg = resolve(member_config(self.sweep.base, member.values))
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / CONFIG_FILE).write_text(dumps(cfg))
        return ["run", str(run_dir / CONFIG_FILE), "--run-dir", str(run_dir)], True

    def _pass_on_stop(self) -> None:
        """One SIGTERM per signal the driver got, to each running member once it can take
        it."""
        for run in self.running.values():
            if run.signalled >= self.signals:
                continue
            if run.proc is None:
                request_stop(run.member.run_dir)
            elif catches_sigterm(run.pid):
                try:
                    run.proc.send_signal(signal.SIGTERM)
                except OSError:
                    pass
            else:
                continue
            run.signalled += 1

    @staticmethod
    def _exit_code(run: Running):
        """The member's exit code once it has ended (None: adopted, code unknown); False
        while it runs."""
        if run.proc is not None:
            code = run.proc.poll()
            return False if code is None else code
        return None if not engine_alive(run.member.run_dir) else False

    def _ended(self, run: Running, code: Optional[int]) -> None:
        row = read_row(run.member.run_dir)
        self.say(f"{run.member.name}: {outcome(row, code, time.time() - run.since)}")


def outcome(row: RunRow, code: Optional[int], seconds: float) -> str:
    """``completed after 0:01:05 · best val 85.00% · sparsity 52.08%``, or the status and
    why."""
    took = f"after {duration(seconds)}"
    if code is not None and code < 0:
        return (f"lost {took}: killed by {signal.Signals(-code).name} without a run_ended; "
                f"`tuiprune sweep --resume` resumes it")
    if row.status == "completed":
        return (f"completed {took} · best val {pct(row.best_val_acc)} · sparsity "
                f"{pct(row.final_sparsity)}")
    return f"{row.status} {took}{f' (exit status {code})' if code else ''}: {why(row)}"
