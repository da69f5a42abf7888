"""Headless output of ``tuiprune run``: a listener on the engine's events (torch-free).

On a terminal: Rich progress (state, epoch, batch, ETA, images/s), a line per epoch, the
per-layer sparsity table at every pruning step and a per-state summary at the end. Redirected
(nohup, CI, ``engine.log``): plain lines, one per epoch and per pruning step, no control
characters.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Optional, TextIO

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn,
                           TextColumn, TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table

from engine.logread import iter_events
from engine.rundir import EVENTS_FILE


def _pct(v) -> str:
    return "—" if v is None else f"{v:.2f}%"


def sparsity_table(ev: dict, title: str) -> Table:
    """The seed report's per-layer table for a ``pruned``/``hard_cut`` event."""
    table = Table(title=title, title_justify="left")
    for col in ("block", "attn sparsity", "heads kept", "mlp sparsity", "neurons kept"):
        table.add_column(col, justify="right")
    for row in ev.get("layers", []):
        table.add_row(str(row["block"]), _pct(row["attn_sparsity"]),
                      f"{row['heads_kept']}/{row['heads_total']}", _pct(row["mlp_sparsity"]),
                      f"{row['neurons_kept']}/{row['neurons_total']}")
    return table


def pruned_title(ev: dict) -> str:
    what = "hard cut at the end of" if ev["event"] == "hard_cut" else "pruning after"
    return (f"{what} state {ev['state']}: overall sparsity {_pct(ev.get('sparsity'))} "
            f"({ev.get('zeros', 0):,} / {ev.get('total', 0):,}), heads "
            f"{ev.get('heads_kept')}/{ev.get('heads_total')}, neurons "
            f"{ev.get('neurons_kept')}/{ev.get('neurons_total')}")


def summary_rows(events) -> List[dict]:
    """Per state: last train acc, best/final val acc, test acc, sparsity, seconds."""
    states: Dict[int, dict] = {}
    for ev in events:
        kind = ev.get("event")
        if kind == "epoch_ended":
            row = states.setdefault(ev["state"], {"state": ev["state"]})
            row["train_acc"], row["val_acc"] = ev.get("train_acc"), ev.get("val_acc")
        elif kind == "state_ended":
            row = states.setdefault(ev["state"], {"state": ev["state"]})
            row.update(best_val_acc=ev.get("best_val_acc"), final_val_acc=ev.get("final_val_acc"),
                       test_acc=ev.get("test_acc"), sparsity=ev.get("sparsity"),
                       seconds=ev.get("seconds"))
    return [states[k] for k in sorted(states)]


class Printer:
    """Turns events into terminal output; ``tty`` picks Rich progress or plain lines."""

    def __init__(self, stream: Optional[TextIO] = None, tty: Optional[bool] = None):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.console = Console(file=self.stream, force_terminal=self.tty,
                               no_color=not self.tty, highlight=False,
                               width=None if self.tty else 120)
        self.progress: Optional[Progress] = None
        self.task = None
        self.run: dict = {}

    # --- output primitives
    def line(self, text: str, style: str = "") -> None:
        if self.tty:
            (self.progress.console if self.progress else self.console).print(text, style=style)
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
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TaskProgressColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                TimeRemainingColumn(), TextColumn("{task.fields[speed]}"),
                TextColumn("{task.fields[metrics]}"), console=self.console, transient=False)
            self.progress.start()
        return self.progress

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    # --- the listener
    def __call__(self, ev: dict) -> None:
        handler = getattr(self, "on_" + str(ev.get("event")), None)
        if handler is not None:
            handler(ev)

    def on_run_started(self, ev: dict) -> None:
        self.run = ev
        m, d = ev.get("model", {}), ev.get("data", {})
        self.line(f"run {ev.get('run_id')}: {m.get('name')} ({m.get('params', 0):,} params, "
                  f"{m.get('blocks')} blocks, weights: {m.get('weights_source')}) on "
                  f"{d.get('dataset')} ({d.get('train')}/{d.get('val')}/{d.get('test')} "
                  f"train/val/test) · {ev.get('method')} {ev.get('sorting')} "
                  f"{ev.get('criterion')} · {ev.get('states')} states × {ev.get('epochs')} "
                  f"epochs · device {ev.get('device')}", style="bold")

    def on_resumed(self, ev: dict) -> None:
        self.line(f"resumed at state {ev['from_state']}, epoch {ev['from_epoch']}, batch "
                  f"{ev['from_batch']} from {ev.get('checkpoint') or 'the start'}", "bold")

    def on_state_started(self, ev: dict) -> None:
        extra = ""
        if ev.get("squeezing"):
            sq = ev["squeezing"]
            extra = (f", squeezing {sq['heads']} heads and {sq['neurons']} neurons "
                     f"({sq['regularized']:,} weights)")
        self.line(f"state {ev['state']} started ({ev.get('method')}, sparsity "
                  f"{_pct(ev.get('sparsity'))}{extra})")

    def on_epoch_started(self, ev: dict) -> None:
        if not self.tty:
            return
        p = self._progress()
        desc = f"state {ev['state']} · epoch {ev['epoch'] + 1}/{self.run.get('epochs', '?')}"
        if self.task is not None:
            p.remove_task(self.task)
        self.task = p.add_task(desc, total=ev["batches"], speed="", metrics="")

    def on_batch(self, ev: dict) -> None:
        if not self.tty:
            return
        if self.task is None:
            self.on_epoch_started({**ev})
        self.progress.update(self.task, completed=ev["batch"] + 1,
                             speed=f"{ev.get('images_per_s', 0):,.0f} img/s",
                             metrics=f"loss {ev.get('loss', 0):.3f} acc {ev.get('acc', 0):.1f}%")

    def on_epoch_ended(self, ev: dict) -> None:
        lam = f" λ {ev['lambda']:.3g}" if ev.get("lambda") is not None else ""
        test = f" test {_pct(ev.get('test_acc'))}" if ev.get("test_acc") is not None else ""
        self.line(f"state {ev['state']} epoch {ev['epoch']}: train {_pct(ev.get('train_acc'))} "
                  f"(loss {ev.get('train_loss', 0):.3f}) val {_pct(ev.get('val_acc'))}{test} "
                  f"· {ev.get('seconds', 0):.1f}s {ev.get('images_per_s', 0):,.0f} img/s{lam}"
                  f"{' *best' if ev.get('best') else ''}")

    def on_pruned(self, ev: dict) -> None:
        verb = "cut now" if ev.get("applied") else "target for the next state (RSST)"
        self.line(f"pruning step {ev['step']} ({ev.get('sorting')}, {ev.get('criterion')}; "
                  f"{verb}): sparsity {_pct(ev.get('sparsity'))}, heads "
                  f"{ev.get('heads_kept')}/{ev.get('heads_total')}, neurons "
                  f"{ev.get('neurons_kept')}/{ev.get('neurons_total')}")
        self.table(sparsity_table(ev, pruned_title(ev)))

    def on_hard_cut(self, ev: dict) -> None:
        self.line(f"hard cut at the end of state {ev['state']}: val "
                  f"{_pct(ev.get('val_acc_before'))} → {_pct(ev.get('val_acc_after'))}, "
                  f"sparsity {_pct(ev.get('sparsity'))}, removed norm "
                  f"{ev.get('residual_norm', 0):.3g}")

    def on_state_ended(self, ev: dict) -> None:
        self.line(f"state {ev['state']} done: best val {_pct(ev.get('best_val_acc'))} "
                  f"(epoch {ev.get('best_epoch')}), final val {_pct(ev.get('final_val_acc'))}, "
                  f"sparsity {_pct(ev.get('sparsity'))}, {ev.get('seconds', 0):.0f}s")

    def on_warning(self, ev: dict) -> None:
        self.line(f"warning: {ev.get('message')}", "yellow")

    def on_error(self, ev: dict) -> None:
        self.line(f"error: {ev.get('message')}", "bold red")

    def on_run_ended(self, ev: dict) -> None:
        self.close()
        self.line(f"run {ev.get('status')}: best val {_pct(ev.get('best_val_acc'))}, "
                  f"sparsity {_pct(ev.get('sparsity'))}, {ev.get('seconds', 0):.0f}s"
                  f"{' — ' + ev['message'] if ev.get('message') else ''}",
                  "bold green" if ev.get("status") == "completed" else "bold yellow")

    def summary(self, run_dir: Path) -> None:
        """The per-state summary of the whole run (read back from its log)."""
        path = Path(run_dir) / EVENTS_FILE
        if not path.exists():
            return
        rows = summary_rows(iter_events(path))
        if not rows:
            return
        table = Table(title=f"summary · {Path(run_dir).name}", title_justify="left")
        for col in ("state", "train acc", "val acc", "best val", "final val", "test acc",
                    "sparsity", "time"):
            table.add_column(col, justify="right")
        for r in rows:
            table.add_row(str(r["state"]), _pct(r.get("train_acc")), _pct(r.get("val_acc")),
                          _pct(r.get("best_val_acc")), _pct(r.get("final_val_acc")),
                          _pct(r.get("test_acc")), _pct(r.get("sparsity")),
                          f"{r['seconds']:.0f}s" if r.get("seconds") is not None else "—")
        self.table(table)
