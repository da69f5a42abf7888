"""Events in, view model out: :class:`Reducer` folds schema-v1 events into a :class:`RunView`.

Pure Python, no Textual, no I/O, so it is tested without a screen and benchmarked alone
(``bench/bench_reducer.py``). Unknown events and fields are ignored; an event whose fields
have the wrong types is skipped and counted, never raised.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Optional

from tuiprune.dashboard import viewmodel as vm
from tuiprune.dashboard.viewmodel import (EpochPoint, LayerRow, LogEntry, RunView,
                                          Structure)
from tuiprune.eventlog import SCHEMA_VERSION, Batch

_RUN_END_STATUS = {"completed": vm.COMPLETED, "stopped": vm.STOPPED, "failed": vm.FAILED}


def _ratios(value: Any) -> List[float]:
    if isinstance(value, (int, float)):
        return [float(value)]
    return [float(x) for x in value] if isinstance(value, list) else []


def _where(ev: Dict[str, Any]) -> str:
    parts = [f"{key[0]}{ev[key]}" for key in ("state", "epoch", "batch")
             if isinstance(ev.get(key), int)]
    return " ".join(parts)


def _structure(kind: str, ev: Dict[str, Any]) -> Structure:
    layers = [LayerRow(int(row.get("block", i)), row.get("attn_sparsity"), row.get("heads_kept"),
                       row.get("heads_total"), row.get("mlp_sparsity"),
                       row.get("neurons_kept"), row.get("neurons_total"))
              for i, row in enumerate(ev.get("layers") or [])]
    return Structure(kind=kind, state=int(ev["state"]), applied=bool(ev.get("applied", True)),
                     sparsity=ev.get("sparsity"), zeros=ev.get("zeros"), total=ev.get("total"),
                     heads_kept=ev.get("heads_kept"), heads_total=ev.get("heads_total"),
                     neurons_kept=ev.get("neurons_kept"), neurons_total=ev.get("neurons_total"),
                     layers=layers, val_acc_before=ev.get("val_acc_before"),
                     val_acc_after=ev.get("val_acc_after"),
                     residual_norm=ev.get("residual_norm"))


class Reducer:
    """Holds one :class:`RunView` and updates it in place, event by event."""

    def __init__(self) -> None:
        self.view = RunView()
        self._handlers: Dict[str, Callable[[Dict[str, Any]], None]] = {
            "batch": self._batch,
            "lambda": self._lambda,
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
        }

    # ---- feeding
    def reset(self) -> None:
        self.view = RunView()

    def apply_batch(self, batch: Batch) -> None:
        if batch.reset:
            self.reset()
        self.apply_all(batch.events)
        if batch.bad_lines:
            self.view.bad_lines += batch.bad_lines

    def apply_all(self, events: Iterable[Dict[str, Any]]) -> None:
        view = self.view
        handlers = self._handlers
        for ev in events:
            view.events += 1
            if ev.get("v") != SCHEMA_VERSION:
                self._check_version(ev.get("v"))
            handler = handlers.get(ev.get("event"))  # type: ignore[arg-type]
            if handler is None:
                continue
            t = ev.get("time")
            if t.__class__ is float or t.__class__ is int:
                view.last_time = t
            try:
                handler(ev)
            except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
                self._malformed(ev, exc)

    def apply(self, ev: Dict[str, Any]) -> None:
        self.apply_all((ev,))

    def mark_engine_lost(self, reason: str, engine_log: List[str]) -> None:
        """The engine process is gone without ``run_ended``."""
        view = self.view
        view.status = vm.LOST
        for st in view.states:
            if st.status == vm.ACTIVE:
                st.status = vm.LOST
        text = reason
        if engine_log:
            text += "\nlast lines of engine.log:\n" + "\n".join(engine_log)
        self._log(view.last_time, "error", text)

    def note(self, level: str, text: str) -> None:
        """A line from the dashboard itself (not from the log) for the log pane."""
        self._log(self.view.last_time, level, text)

    # ---- helpers
    def _log(self, time: Optional[float], level: str, text: str, where: str = "") -> None:
        view = self.view
        if level == "warning":
            view.warnings += 1
        elif level == "error":
            view.errors += 1
        view.log.append(LogEntry(time, level, text, where))

    def _check_version(self, v: Any) -> None:
        if isinstance(v, int) and v > SCHEMA_VERSION and self.view.newer_schema is None:
            self.view.newer_schema = v
            self._log(self.view.last_time, "warning",
                      f"event log schema v{v} is newer than this viewer (v{SCHEMA_VERSION}): "
                      "showing what it understands; upgrade tuiprune for the rest")

    def _malformed(self, ev: Dict[str, Any], exc: Exception) -> None:
        self.view.bad_events += 1
        if self.view.bad_events <= 5:
            self._log(ev.get("time") if isinstance(ev.get("time"), (int, float)) else None,
                      "warning", f"skipped a malformed {ev.get('event')!r} event "
                      f"(seq {ev.get('seq')}): {type(exc).__name__}: {exc}")

    # ---- high-rate events (keep cheap)
    def _batch(self, ev: Dict[str, Any]) -> None:
        p = self.view.progress
        state, epoch, b = ev["state"], ev["epoch"], ev["batch"]
        if state != p.state or epoch != p.epoch:
            p.start_epoch(state, epoch, ev.get("batches"), ev.get("lr"), ev.get("time"))
        p.batch = b
        p.batches = ev.get("batches", p.batches)
        p.images_per_s = ev.get("images_per_s")
        p.lr = ev.get("lr", p.lr)
        p.last_time = ev.get("time", p.last_time)
        loss, acc = ev.get("loss"), ev.get("acc")
        if loss is not None:
            p.loss.add(b, loss)
        if acc is not None:
            p.acc.add(b, acc)

    def _lambda(self, ev: Dict[str, Any]) -> None:
        st = self.view.state(ev["state"])
        value = ev.get("value")
        if value is not None:
            st.lambdas.add(ev.get("step", st.lambdas.count), value)
        st.lambda_last = ev

    # ---- structure of the run
    def _run_started(self, ev: Dict[str, Any]) -> None:
        view = self.view
        if view.run_id:  # a second run in one file: start the picture over
            view.states, view.progress, view.ended = [], vm.Progress(), None
        view.run_id = str(ev.get("run_id") or "")
        view.name = str(ev.get("name") or view.run_id)
        view.model = ev.get("model") if isinstance(ev.get("model"), dict) else {}
        view.data = ev.get("data") if isinstance(ev.get("data"), dict) else {}
        view.method = str(ev.get("method") or "")
        view.sorting = str(ev.get("sorting") or "")
        view.criterion = str(ev.get("criterion") or "")
        view.head_ratio = _ratios(ev.get("head_ratio"))
        view.mlp_ratio = _ratios(ev.get("mlp_ratio"))
        view.device = str(ev.get("device") or "")
        view.host = str(ev.get("host") or "")
        view.pid = ev.get("pid")
        view.batches_per_epoch = ev.get("batches_per_epoch")
        view.started_at = view.last_time = ev.get("time")
        view.status = vm.RUNNING
        epochs = ev.get("epochs")
        for i in range(int(ev.get("states") or 0)):
            st = view.state(i)
            st.epochs = epochs[i] if isinstance(epochs, list) and i < len(epochs) else epochs
        self._log(ev.get("time"), "info",
                  f"run {view.run_id} started: pid {view.pid} on {view.host or '?'}, "
                  f"device {view.device or '?'}")

    def _resumed(self, ev: Dict[str, Any]) -> None:
        view = self.view
        view.status = vm.RUNNING
        view.ended = None
        view.pid = ev.get("pid", view.pid)
        view.device = str(ev.get("device") or view.device)
        for st in view.states:
            if st.status == vm.LOST:
                st.status = vm.ACTIVE
        self._log(ev.get("time"), "info",
                  f"resumed at state {ev.get('from_state')} epoch {ev.get('from_epoch')} "
                  f"batch {ev.get('from_batch')} (pid {ev.get('pid')}, from "
                  f"{ev.get('checkpoint')})")

    def _state_started(self, ev: Dict[str, Any]) -> None:
        view = self.view
        index = int(ev["state"])
        for st in view.states[:index]:
            if st.status == vm.ACTIVE:
                st.status = vm.DONE
        st = view.state(index)
        st.status = vm.ACTIVE
        st.epochs = ev.get("epochs", st.epochs)
        st.sparsity_start = ev.get("sparsity")
        st.rewound_to = ev.get("rewound_to")
        st.squeezing = ev.get("squeezing")
        view.current_state = index

    def _epoch_started(self, ev: Dict[str, Any]) -> None:
        self.view.progress.start_epoch(ev["state"], ev["epoch"], ev.get("batches"),
                                       ev.get("lr"), ev.get("time"))

    def _epoch_ended(self, ev: Dict[str, Any]) -> None:
        st = self.view.state(ev["state"])
        point = EpochPoint(ev["state"], ev["epoch"], ev.get("train_acc"), ev.get("val_acc"),
                           ev.get("train_loss"), ev.get("val_loss"), ev.get("test_acc"),
                           ev.get("seconds"), ev.get("images_per_s"), bool(ev.get("best")))
        if st.points and st.points[-1].epoch >= point.epoch:  # a repeat after a resume
            st.points = [p for p in st.points if p.epoch != point.epoch]
        st.points.append(point)
        val = point.val_acc
        if val is not None and (point.best or st.best_val_acc is None or val > st.best_val_acc):
            st.best_val_acc, st.best_epoch = val, point.epoch
        if st.status == vm.PENDING:
            st.status = vm.ACTIVE

    def _state_ended(self, ev: Dict[str, Any]) -> None:
        st = self.view.state(ev["state"])
        st.status = vm.DONE
        st.best_val_acc = ev.get("best_val_acc", st.best_val_acc)
        st.best_epoch = ev.get("best_epoch", st.best_epoch)
        st.final_val_acc = ev.get("final_val_acc")
        st.test_acc = ev.get("test_acc")
        st.sparsity_end = ev.get("sparsity")
        st.seconds = ev.get("seconds")

    def _pruned(self, ev: Dict[str, Any]) -> None:
        s = _structure("pruned", ev)
        self.view.state(s.state).pruned = s
        verb = "applied" if s.applied else "target (RSST squeezes toward it, cuts later)"
        self._log(ev.get("time"), "info",
                  f"pruning step {ev.get('step')} after state {s.state}: sparsity "
                  f"{_pct(s.sparsity)}, heads {s.heads_kept}/{s.heads_total}, neurons "
                  f"{s.neurons_kept}/{s.neurons_total} kept, {verb}")

    def _hard_cut(self, ev: Dict[str, Any]) -> None:
        s = _structure("hard_cut", ev)
        self.view.state(s.state).hard_cut = s
        self._log(ev.get("time"), "info",
                  f"hard cut at the end of state {s.state}: sparsity {_pct(s.sparsity)}, val "
                  f"{_pct(s.val_acc_before)} -> {_pct(s.val_acc_after)}")

    def _warning(self, ev: Dict[str, Any]) -> None:
        self._log(ev.get("time"), "warning", str(ev.get("message", "")), _where(ev))

    def _error(self, ev: Dict[str, Any]) -> None:
        text = str(ev.get("message", ""))
        tb = ev.get("traceback")
        if tb:
            text += "\n" + str(tb).rstrip("\n")
        self._log(ev.get("time"), "error", text, _where(ev))

    def _run_ended(self, ev: Dict[str, Any]) -> None:
        view = self.view
        view.ended = ev
        raw = str(ev.get("status") or "")
        view.status = _RUN_END_STATUS.get(raw, raw or vm.COMPLETED)
        for st in view.states:
            if st.status == vm.ACTIVE:
                st.status = vm.DONE if view.status == vm.COMPLETED else view.status
        message = ev.get("message") or ""
        level = "error" if view.status == vm.FAILED else "info"
        self._log(ev.get("time"), level, f"run ended: {raw or '?'}"
                  + (f" - {message}" if message else ""))


def _pct(value: Optional[float]) -> str:
    return "?" if value is None else f"{value:.2f}%"
