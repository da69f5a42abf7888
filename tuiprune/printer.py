"""Headless output of ``tuiprune run``: a listener on the engine's events (torch-free).

On a terminal: Rich progress (state, epoch, batch, ETA, images/s), a line per epoch, the
per-layer sparsity table at every pruning step and a per-state summary at the end. Redirected
(nohup, CI, ``engine.log``): plain lines, one per epoch and per pruning step, no control
characters.

The printer is one boundary between events and a terminal: every event is validated
(``engine.schema``; one that does not fit is skipped and counted, never raised into the run)
and every string in it made printable (:func:`tuiprune.format.printable_tree`) before anything
is shown; output is built as Rich ``Text``, never as console markup.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, TextIO

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn,
                           TextColumn, TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table
from rich.text import Text

from engine.runlog import read_log
from engine.rundir import EVENTS_FILE
from engine.schema import Malformed, validate
from tuiprune import format as fmt

Event = Dict[str, Any]
MAX_TABLE_ROWS = 200  # blocks listed per pruning step (real ViTs have a few dozen)


def _v(value: Any) -> str:
    """An identifier or label as written (NO_VALUE when absent)."""
    return fmt.NO_VALUE if value is None else str(value)


def _cells(*values: str) -> List[Text]:
    return [Text(v) for v in values]


def sparsity_table(ev: Event, title: str) -> Table:
    """The seed report's per-layer table for a ``pruned``/``hard_cut`` event."""
    table = Table(title=Text(title), title_justify="left")
    for col in ("block", "attn sparsity", "heads kept", "mlp sparsity", "neurons kept"):
        table.add_column(col, justify="right")
    layers = ev["layers"] or []
    for row in layers[:MAX_TABLE_ROWS]:
        table.add_row(*_cells(str(row["block"]), fmt.pct(row["attn_sparsity"]),
                              fmt.ratio(row["heads_kept"], row["heads_total"]),
                              fmt.pct(row["mlp_sparsity"]),
                              fmt.ratio(row["neurons_kept"], row["neurons_total"])))
    if len(layers) > MAX_TABLE_ROWS:
        table.add_row(Text(f"... {fmt.plural(len(layers) - MAX_TABLE_ROWS, 'more block')}"))
    return table


def pruned_title(ev: Event) -> str:
    what = "hard cut at the end of" if ev["event"] == "hard_cut" else "pruning after"
    return (f"{what} state {ev['state']}: overall sparsity {fmt.pct(ev['sparsity'])} "
            f"({fmt.count(ev['zeros'])} / {fmt.count(ev['total'])}), heads "
            f"{fmt.ratio(ev['heads_kept'], ev['heads_total'])}, neurons "
            f"{fmt.ratio(ev['neurons_kept'], ev['neurons_total'])}")


class Printer:
    """Turns events into terminal output; ``tty`` picks Rich progress or plain lines."""

    def __init__(self, stream: Optional[TextIO] = None, tty: Optional[bool] = None):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.console = Console(file=self.stream, force_terminal=self.tty,
                               no_color=not self.tty, highlight=False, emoji=False,
                               width=None if self.tty else 120)
        self.progress: Optional[Progress] = None
        self.task = None
        self.run: Event = {}
        self.skipped = 0  # events that did not fit the schema
        self.failed = 0  # events whose output failed (a printer bug must not stop a run)

    # --- output primitives
    def line(self, text: str, style: str = "") -> None:
        if self.tty:
            console = self.progress.console if self.progress else self.console
            console.print(Text(text, style=style))
        else:
            print(text, file=self.stream, flush=True)

    def table(self, table: Table) -> None:
        if self.tty and self.progress:
            self.progress.console.print(table)
        else:
            self.console.print(table)
            self.stream.flush()

    def _progress(self) -> Progress:
        if self.progress is None:
            self.progress = Progress(
                TextColumn("{task.description}", style="bold", markup=False), BarColumn(),
                MofNCompleteColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                TextColumn("ETA", markup=False), TimeRemainingColumn(),
                TextColumn("{task.fields[speed]}", markup=False),
                TextColumn("{task.fields[metrics]}", markup=False), console=self.console,
                transient=False)
            self.progress.start()
        return self.progress

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    # --- the listener
    def __call__(self, ev: Event) -> None:
        """Show one event as the engine emits it (never raises on its content)."""
        try:
            checked = validate(dict(ev) if isinstance(ev, dict) else ev)
        except Malformed:
            self.skipped += 1
            return
        if checked is None:
            return
        handler = getattr(self, "on_" + checked["event"], None)
        if handler is None:
            return
        try:
            handler(fmt.printable_tree(checked))
        except Exception as exc:  # noqa: BLE001 - the run goes on; say so once
            self.failed += 1
            if self.failed == 1:
                print(f"tuiprune: the output could not show a {checked['event']} event "
                      f"({type(exc).__name__}: {fmt.printable(exc)}); the run goes on",
                      file=sys.stderr)

    def on_run_started(self, ev: Event) -> None:
        self.run = ev
        m, d = ev["model"] or {}, ev["data"] or {}
        self.line(f"run {_v(ev['run_id'])}: {_v(m.get('name'))} ({fmt.count(m.get('params'))} "
                  f"params, {_v(m.get('blocks'))} blocks, weights: "
                  f"{_v(m.get('weights_source'))}) on {_v(d.get('dataset'))} "
                  f"({_v(d.get('train'))}/{_v(d.get('val'))}/{_v(d.get('test'))} "
                  f"train/val/test) · {_v(ev['method'])} {_v(ev['sorting'])} "
                  f"{_v(ev['criterion'])} · {_v(ev['states'])} states × {_v(ev['epochs'])} "
                  f"epochs · device {_v(ev['device'])}", style="bold")

    def on_resumed(self, ev: Event) -> None:
        self.line(f"resumed at state {_v(ev['from_state'])}, epoch {_v(ev['from_epoch'])}, "
                  f"batch {_v(ev['from_batch'])} from {ev['checkpoint'] or 'the start'}", "bold")

    def on_state_started(self, ev: Event) -> None:
        extra = ""
        sq = ev["squeezing"]
        if sq:
            extra = (f", squeezing {fmt.count(sq['heads'])} heads and "
                     f"{fmt.count(sq['neurons'])} neurons ({fmt.count(sq['regularized'])} "
                     f"weights)")
        self.line(f"state {ev['state']} started ({_v(ev['method'])}, sparsity "
                  f"{fmt.pct(ev['sparsity'])}{extra})")

    def on_epoch_started(self, ev: Event) -> None:
        if not self.tty:
            return
        p = self._progress()
        desc = f"state {ev['state']} · epoch {ev['epoch'] + 1}/{_v(self.run.get('epochs'))}"
        if self.task is not None:
            p.remove_task(self.task)
        self.task = p.add_task(desc, total=ev.get("batches"), speed="", metrics="")

    def on_batch(self, ev: Event) -> None:
        if not self.tty:
            return
        if self.task is None:
            self.on_epoch_started(ev)
        self.progress.update(self.task, completed=ev["batch"] + 1,
                             speed=f"{fmt.count(ev['images_per_s'])} img/s",
                             metrics=f"loss {fmt.number(ev['loss'], 3)} acc "
                                     f"{fmt.pct(ev['acc'], 1)}")

    def on_epoch_ended(self, ev: Event) -> None:
        lam = f" λ {fmt.sci(ev['lambda'])}" if ev["lambda"] is not None else ""
        test = f" test {fmt.pct(ev['test_acc'])}" if ev["test_acc"] is not None else ""
        self.line(f"state {ev['state']} epoch {ev['epoch']}: train {fmt.pct(ev['train_acc'])} "
                  f"(loss {fmt.number(ev['train_loss'], 3)}) val {fmt.pct(ev['val_acc'])}{test} "
                  f"· {fmt.number(ev['seconds'], 1)}s {fmt.count(ev['images_per_s'])} img/s"
                  f"{lam}{' *best' if ev['best'] else ''}")

    def on_pruned(self, ev: Event) -> None:
        verb = "cut now" if ev["applied"] else "target for the next state (RSST)"
        self.line(f"pruning step {ev['step']} ({_v(ev['sorting'])}, {_v(ev['criterion'])}; "
                  f"{verb}): sparsity {fmt.pct(ev['sparsity'])}, heads "
                  f"{fmt.ratio(ev['heads_kept'], ev['heads_total'])}, neurons "
                  f"{fmt.ratio(ev['neurons_kept'], ev['neurons_total'])}")
        self.table(sparsity_table(ev, pruned_title(ev)))

    def on_hard_cut(self, ev: Event) -> None:
        self.line(f"hard cut at the end of state {ev['state']}: val "
                  f"{fmt.pct(ev['val_acc_before'])} → {fmt.pct(ev['val_acc_after'])}, "
                  f"sparsity {fmt.pct(ev['sparsity'])}, removed norm "
                  f"{fmt.sci(ev['residual_norm'])}")

    def on_state_ended(self, ev: Event) -> None:
        self.line(f"state {ev['state']} done: best val {fmt.pct(ev['best_val_acc'])} "
                  f"(epoch {_v(ev['best_epoch'])}), final val {fmt.pct(ev['final_val_acc'])}, "
                  f"sparsity {fmt.pct(ev['sparsity'])}, {fmt.number(ev['seconds'], 0)}s")

    def on_warning(self, ev: Event) -> None:
        self.line(f"warning: {ev['message']}", "yellow")

    def on_error(self, ev: Event) -> None:
        self.line(f"error: {ev['message']}", "bold red")

    def on_run_ended(self, ev: Event) -> None:
        self.close()
        self.line(f"run {ev['status']}: best val {fmt.pct(ev['best_val_acc'])}, "
                  f"sparsity {fmt.pct(ev['sparsity'])}, {fmt.number(ev['seconds'], 0)}s"
                  f"{' — ' + ev['message'] if ev['message'] else ''}",
                  "bold green" if ev["status"] == "completed" else "bold yellow")

    def summary(self, run_dir: Path) -> None:
        """The per-state summary of the whole run (read back from its log)."""
        path = Path(run_dir) / EVENTS_FILE
        if not path.exists():
            return
        log = read_log(path)
        rows = log.summary_rows()
        if log.malformed:
            self.line(f"{fmt.plural(log.malformed, 'malformed line')} of the event log "
                      f"skipped (first: {fmt.printable(log.problems[0])})", "yellow")
        if not rows:
            return
        name = fmt.printable(Path(run_dir).name, newlines=False)
        table = Table(title=Text(f"summary · {name}"), title_justify="left")
        for col in ("state", "train acc", "val acc", "best val", "final val", "test acc",
                    "sparsity", "time"):
            table.add_column(col, justify="right")
        for r in rows:
            seconds = r.get("seconds")
            table.add_row(*_cells(str(r["state"]), fmt.pct(r.get("train_acc")),
                                  fmt.pct(r.get("val_acc")), fmt.pct(r.get("best_val_acc")),
                                  fmt.pct(r.get("final_val_acc")), fmt.pct(r.get("test_acc")),
                                  fmt.pct(r.get("sparsity")),
                                  fmt.NO_VALUE if seconds is None else f"{seconds:.0f}s"))
        self.table(table)
