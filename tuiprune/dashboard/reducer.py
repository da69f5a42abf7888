"""Events in, view model out: :class:`Reducer` folds validated events into a :class:`RunView`.

Pure Python, no Textual, no I/O, so it is tested without a screen and benchmarked alone
(``bench/bench_reducer.py``). It takes only events that passed :func:`engine.schema.validate`
(``engine.logread`` delivers nothing else): every field of an event's type is present, absent
optional ones as None, so handlers index ``ev["field"]``; every index that sizes something
(state, epoch, block, list lengths) is bounded by the schema.

The reducer is the dashboard's one boundary between the log and the screen: every string it
stores passes :func:`tuiprune.format.printable`, so no escape sequence from a log reaches the
terminal, and widgets draw strings as plain ``Text`` (never markup).

Besides the log's events it takes *synthetic* ones, which no log line can produce (the reader
drops unknown event types): :data:`ENGINE_LOST`, derived from the run directory when the engine
is gone without ``run_ended`` (see :mod:`tuiprune.dashboard.liveness`), so a watch and a replay
show it alike; and :data:`ENGINE_REMOTE`, when the engine's pid file names another host, so
liveness is judged by the log's heartbeat (the time of its last event) instead.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Optional

from engine.logread import Chunk
from engine.schema import SCHEMA_VERSION
from tuiprune import format as fmt
from tuiprune.dashboard import viewmodel as vm
from tuiprune.dashboard.sysview import SystemView
from tuiprune.dashboard.viewmodel import (EpochPoint, LambdaNow, LayerRow, LogEntry, RunEnd,
                                          RunView, Squeeze, Structure)

ENGINE_LOST = "engine_lost"  # synthetic: reason (str), engine_log (list of str)
ENGINE_REMOTE = "engine_remote"  # synthetic: host (str; "" when the engine is local again)
NOTE = "note"  # synthetic: level ("info"|"warning"|"error"), text: the dashboard's own words
MAX_FIELD_CHARS = 500  # a name, a status: what one line of the screen can show and more
MAX_TEXT_CHARS = 16_000  # a message with its traceback, per log entry
_RUN_END_STATUS = {"completed": vm.COMPLETED, "stopped": vm.STOPPED, "failed": vm.FAILED}

Event = Dict[str, Any]


def synthetic(kind: str, time: Optional[float], **fields: Any) -> Event:
    """An event the dashboard derives itself (never read from a log)."""
    return {"v": SCHEMA_VERSION, "event": kind, "time": time, "seq": None, **fields}


def _cut(text: str, most: int) -> str:
    if len(text) <= most:
        return text
    return text[:most] + f"... ({len(text) - most:,} more characters)"


def line(value: Any) -> str:
    """A one-line field from the log, safe to show (bounded, no control characters)."""
    return "" if value is None else fmt.printable(_cut(str(value), MAX_FIELD_CHARS),
                                                  newlines=False)


def _ident(value: Optional[int]) -> str:
    """An identifier (pid, state, epoch): digits without separators."""
    return fmt.NO_VALUE if value is None else str(value)


def _where(ev: Event) -> str:
    return " ".join(f"{key[0]}{ev[key]}" for key in ("state", "epoch", "batch")
                    if ev.get(key) is not None)


def _squeeze(obj: Event) -> Squeeze:
    return Squeeze(obj["regularized"], obj["heads"], obj["neurons"])


def _structure(kind: str, ev: Event) -> Structure:
    layers = [LayerRow(row["block"], row["attn_sparsity"], row["heads_kept"], row["heads_total"],
                       row["mlp_sparsity"], row["neurons_kept"], row["neurons_total"])
              for row in ev["layers"] or ()]
    return Structure(kind=kind, state=ev["state"], applied=ev.get("applied") is not False,
                     sparsity=ev["sparsity"], zeros=ev["zeros"], total=ev["total"],
                     heads_kept=ev["heads_kept"], heads_total=ev["heads_total"],
                     neurons_kept=ev["neurons_kept"], neurons_total=ev["neurons_total"],
                     layers=layers, val_acc_before=ev.get("val_acc_before"),
                     val_acc_after=ev.get("val_acc_after"),
                     residual_norm=ev.get("residual_norm"))


class Reducer:
    """Holds one :class:`RunView` and updates it in place, event by event."""

    def __init__(self) -> None:
        self.view = RunView()
        self._handlers: Dict[str, Callable[[Event], None]] = {
            "batch": self._batch,
            "lambda": self._lambda,
            "system": self._system,
            "heartbeat": self._heartbeat,
            "epoch_started": self._epoch_started,
            "epoch_ended": self._epoch_ended,
            "state_started": self._state_started,
            "state_ended": self._state_ended,
            "pruned": self._pruned,
            "hard_cut": self._hard_cut,
            "run_started": self._run_started,
            "resumed": self._resumed,
            "warning": self._warning,
            "error": self._error,
            "run_ended": self._run_ended,
            ENGINE_LOST: self._engine_lost,
            ENGINE_REMOTE: self._engine_remote,
            NOTE: self._note,
        }

    # ---- feeding
    def reset(self) -> None:
        """Forget everything (the log was replaced); the change counters keep counting so
        every widget sees a change."""
        changes = self.view.changes
        self.view = RunView()
        for name in vars(changes):
            setattr(self.view.changes, name, getattr(changes, name) + 1)

    def apply_chunk(self, chunk: Chunk) -> None:
        """A chunk from ``engine.logread`` (or a tailer/player that uses it)."""
        if chunk.reset:
            self.reset()
        self.apply_all(chunk.events)
        view = self.view
        if chunk.malformed:
            view.malformed += chunk.malformed
            room = vm.PROBLEMS_KEPT - len(view.problems)
            view.problems += [line(p) for p in chunk.problems[:max(0, room)]]
            view.changes.log += 1
        if chunk.torn and not view.torn:
            view.torn = True
            self._log(view.last_time, "warning", "the log ends in an incomplete line (its "
                      "writer died mid-line); that line was not read")

    def apply_all(self, events: Iterable[Event]) -> None:
        view = self.view
        handlers = self._handlers
        for ev in events:
            view.events += 1
            if ev["v"] != SCHEMA_VERSION:
                self._check_version(ev["v"])
            handler = handlers.get(ev["event"])
            if handler is None:
                continue
            if ev["time"] is not None:
                view.last_time = ev["time"]
            handler(ev)

    def apply(self, ev: Event) -> None:
        self.apply_all((ev,))

    def note(self, level: str, text: str) -> None:
        """A line from the dashboard itself (not from the log) for the log pane."""
        self.apply(synthetic(NOTE, self.view.last_time, level=level, text=text))

    # ---- helpers
    def _log(self, time: Optional[float], level: str, text: str, where: str = "") -> None:
        view = self.view
        if level == "warning":
            view.warnings += 1
        elif level == "error":
            view.errors += 1
        view.log.append(LogEntry(time, line(level), fmt.printable(_cut(text, MAX_TEXT_CHARS)),
                                 line(where)))
        view.changes.log += 1

    def _check_version(self, v: int) -> None:
        if v > SCHEMA_VERSION and self.view.newer_schema is None:
            self.view.newer_schema = v
            self._log(self.view.last_time, "warning",
                      f"event log schema v{v} is newer than this viewer (v{SCHEMA_VERSION}): "
                      "showing what it understands; upgrade tuiprune for the rest")

    def _set_status(self, status: str) -> None:
        self.view.status = status
        self.view.changes.run += 1

    # ---- high-rate events (keep cheap)
    def _batch(self, ev: Event) -> None:
        p = self.view.progress
        state, epoch, b = ev["state"], ev["epoch"], ev["batch"]
        if state != p.state or epoch != p.epoch:
            p.start_epoch(state, epoch, ev["batches"], ev["lr"], ev["time"])
        p.batch = b
        if ev["batches"] is not None:
            p.batches = ev["batches"]
        p.images_per_s = ev["images_per_s"]
        if ev["lr"] is not None:
            p.lr = ev["lr"]
        p.last_time = ev["time"]
        if ev["loss"] is not None:
            p.loss.add(b, ev["loss"])
        if ev["acc"] is not None:
            p.acc.add(b, ev["acc"])
        self.view.changes.progress += 1

    def _lambda(self, ev: Event) -> None:
        st = self.view.state(ev["state"])
        value, step = ev["value"], ev["step"]
        if value is not None:
            st.lambdas.add(st.lambdas.count if step is None else step, value)
        st.lambda_last = LambdaNow(value, step, ev["steps"], _squeeze(ev))
        self.view.changes.lam += 1

    def _system(self, ev: Event) -> None:
        system = self.view.system
        if system.add(ev, line):
            self._log(ev["time"], "warning", f"{system.starving.advice} (data wait "
                      f"{fmt.share(system.data_wait)}, GPU utilisation "
                      f"{fmt.pct(system.gpu_util, 0)} for {fmt.span(system.starving.seconds)})")
        self.view.changes.system += 1

    def _heartbeat(self, ev: Event) -> None:
        """Nothing to show but its time: the engine is alive (``apply_all`` keeps it)."""

    # ---- structure of the run
    def _run_started(self, ev: Event) -> None:
        view = self.view
        if view.run_id:  # a second run in one file: start the picture over
            view.states, view.progress, view.ended = [], vm.Progress(), None
            view.system = SystemView()
            view.changes.system += 1
        view.run_id = line(ev["run_id"])
        view.name = line(ev["name"]) or view.run_id
        model, data = ev["model"] or {}, ev["data"] or {}
        view.model_name, view.dataset = line(model.get("name")), line(data.get("dataset"))
        view.method, view.sorting = line(ev["method"]), line(ev["sorting"])
        view.criterion = line(ev["criterion"])
        view.head_ratio = list(ev["head_ratio"] or ())
        view.mlp_ratio = list(ev["mlp_ratio"] or ())
        view.device, view.host = line(ev["device"]), line(ev["host"])
        view.world_size = ev["world_size"]
        view.hosts = [line(h) for h in ev["hosts"] or ()]
        view.pid = ev["pid"]
        view.batches_per_epoch = ev["batches_per_epoch"]
        view.started_at = ev["time"]
        for i in range(ev["states"] or 0):
            view.state(i).epochs = ev["epochs"]
        self._set_status(vm.RUNNING)
        view.changes.states += 1
        self._log(ev["time"], "info",
                  f"run {view.run_id} started: pid {_ident(view.pid)} on "
                  f"{view.host or fmt.NO_VALUE}, device {view.device or fmt.NO_VALUE}")

    def _resumed(self, ev: Event) -> None:
        view = self.view
        view.ended = None
        if ev["pid"] is not None:
            view.pid = ev["pid"]
        view.device = line(ev["device"]) or view.device
        for st in view.states:
            if st.status == vm.LOST:
                st.status = vm.ACTIVE
        self._set_status(vm.RUNNING)
        view.changes.states += 1
        self._log(ev["time"], "info",
                  f"resumed at state {_ident(ev['from_state'])} epoch "
                  f"{_ident(ev['from_epoch'])} batch {_ident(ev['from_batch'])} (pid "
                  f"{_ident(ev['pid'])}, from {line(ev['checkpoint']) or fmt.NO_VALUE})")

    def _state_started(self, ev: Event) -> None:
        view = self.view
        index = ev["state"]
        for st in view.states[:index]:
            if st.status == vm.ACTIVE:
                st.status = vm.DONE
        st = view.state(index)
        st.status = vm.ACTIVE
        if ev["epochs"] is not None:
            st.epochs = ev["epochs"]
        st.sparsity_start = ev["sparsity"]
        st.rewound_to = line(ev["rewound_to"]) if ev["rewound_to"] is not None else None
        st.squeezing = _squeeze(ev["squeezing"]) if ev["squeezing"] is not None else None
        view.current_state = index
        view.changes.states += 1
        view.changes.lam += 1

    def _epoch_started(self, ev: Event) -> None:
        self.view.progress.start_epoch(ev["state"], ev["epoch"], ev["batches"], ev["lr"],
                                       ev["time"])
        self.view.changes.progress += 1

    def _epoch_ended(self, ev: Event) -> None:
        st = self.view.state(ev["state"])
        point = EpochPoint(ev["state"], ev["epoch"], ev["train_acc"], ev["val_acc"],
                           ev["train_loss"], ev["val_loss"], ev["test_acc"], ev["seconds"],
                           ev["images_per_s"], ev["best"] is True)
        st.points[point.epoch] = point  # a repeat after a resume replaces the first
        val = point.val_acc
        if val is not None and (point.best or st.best_val_acc is None or val > st.best_val_acc):
            st.best_val_acc, st.best_epoch = val, point.epoch
        if st.status == vm.PENDING:
            st.status = vm.ACTIVE
        self.view.changes.states += 1

    def _state_ended(self, ev: Event) -> None:
        st = self.view.state(ev["state"])
        st.status = vm.DONE
        if ev["best_val_acc"] is not None:
            st.best_val_acc = ev["best_val_acc"]
        if ev["best_epoch"] is not None:
            st.best_epoch = ev["best_epoch"]
        st.final_val_acc = ev["final_val_acc"]
        st.test_acc = ev["test_acc"]
        st.sparsity_end = ev["sparsity"]
        st.seconds = ev["seconds"]
        self.view.changes.states += 1

    def _pruned(self, ev: Event) -> None:
        s = _structure("pruned", ev)
        self.view.state(s.state).pruned = s
        self.view.changes.structure += 1
        verb = "applied" if s.applied else "target (RSST squeezes toward it, cuts later)"
        self._log(ev["time"], "info",
                  f"pruning step {_ident(ev['step'])} after state {s.state}: sparsity "
                  f"{fmt.pct(s.sparsity)}, heads {fmt.ratio(s.heads_kept, s.heads_total)}, "
                  f"neurons {fmt.ratio(s.neurons_kept, s.neurons_total)} kept, {verb}")

    def _hard_cut(self, ev: Event) -> None:
        s = _structure("hard_cut", ev)
        self.view.state(s.state).hard_cut = s
        self.view.changes.structure += 1
        self.view.changes.lam += 1
        self._log(ev["time"], "info",
                  f"hard cut at the end of state {s.state}: sparsity {fmt.pct(s.sparsity)}, "
                  f"val {fmt.pct(s.val_acc_before)} -> {fmt.pct(s.val_acc_after)}")

    def _warning(self, ev: Event) -> None:
        self._log(ev["time"], "warning", ev["message"], _where(ev))

    def _error(self, ev: Event) -> None:
        text = ev["message"]
        if ev["traceback"]:
            text += "\n" + ev["traceback"].rstrip("\n")
        self._log(ev["time"], "error", text, _where(ev))

    def _run_ended(self, ev: Event) -> None:
        view = self.view
        raw = line(ev["status"])
        view.ended = RunEnd(raw, ev["best_val_acc"], ev["final_val_acc"], ev["test_acc"],
                            ev["sparsity"], ev["seconds"], line(ev["message"]))
        status = _RUN_END_STATUS.get(raw, raw or vm.COMPLETED)
        self._set_status(status)
        for st in view.states:
            if st.status == vm.ACTIVE:
                st.status = vm.DONE if status == vm.COMPLETED else status
        view.changes.states += 1
        level = "error" if status == vm.FAILED else "info"
        self._log(ev["time"], level, f"run ended: {raw or fmt.NO_VALUE}"
                  + (f" - {view.ended.message}" if view.ended.message else ""))

    def _note(self, ev: Event) -> None:
        self._log(ev["time"], ev["level"], ev["text"])

    def _engine_lost(self, ev: Event) -> None:
        """Synthetic: the engine process is gone without ``run_ended``."""
        view = self.view
        for st in view.states:
            if st.status == vm.ACTIVE:
                st.status = vm.LOST
        self._set_status(vm.LOST)
        view.changes.states += 1
        engine_log: List[str] = ev["engine_log"]
        text = ev["reason"]
        if engine_log:
            text += "\nlast lines of engine.log:\n" + "\n".join(engine_log)
        self._log(ev["time"], "error", text)

    def _engine_remote(self, ev: Event) -> None:
        """Synthetic: the engine runs on another host (or, ``host`` empty, here again)."""
        view = self.view
        host = line(ev["host"])
        if host == view.remote_host:
            return
        view.remote_host = host
        view.changes.run += 1
        if host:
            self._log(ev["time"], "info", f"the engine runs on host {host}: its liveness is "
                      "judged by the log (the time of its last event, heartbeats included)")
