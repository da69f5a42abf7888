"""The report as Markdown: title, status, configuration, what is missing, states and epochs,
messages, and the assembly of every section (:func:`render`). Torch-free.

Data reaches the text only through :mod:`tuiprune.report.mdtext` (``text``, ``table``) and
numbers only through ``tuiprune.format``.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

from engine.rundir import EVENTS_FILE
from engine.runlog import RunLog, StateLog
from engine.schema import SCHEMA_VERSION
from tuiprune import format as fmt
from tuiprune.report.checks import Check, config_value
from tuiprune.report.compare import comparison
from tuiprune.report.figures import Figure
from tuiprune.report.log import LoggedRun, missing_epochs, planned_epochs
from tuiprune.report.mdtext import Md, bullets, heading, table, text
from tuiprune.report.steps import (export_section, lambda_section, pruning_steps, upper,
                                   verification)

STATUS_ICON = {"completed": "✅", "stopped": "⏹", "failed": "❌"}


def status_line(run: LoggedRun) -> str:
    end = run.log.ended
    if end is not None:
        msg = f" — {text(end['message'])}" if end["message"] else ""
        return f"{STATUS_ICON.get(end['status'], '❔')} **{text(end['status'])}**{msg}"
    if run.engine_alive:
        return "⏳ **running** (the engine process is alive; this report is a snapshot)"
    if run.engine_alive is False:
        return ("⚠️ **ended without `run_ended`** — the engine process is gone (killed, out "
                "of memory, or the machine went down); resume with `tuiprune run --resume`")
    return "❔ **no `run_ended`** — still running elsewhere, or the engine died without a word"


def _log_problems(log: RunLog) -> List[str]:
    out = []
    if log.started is None:
        out.append("`run_started` is missing: the log does not begin at the start of the run "
                   "(configuration below is incomplete)")
    elif log.first_seq not in (0, None):
        out.append(f"the log starts at seq {log.first_seq}, not 0")
    if log.newer_version:
        out.append(f"the log uses schema v{log.newer_version}; this tuiprune reads "
                   f"v{SCHEMA_VERSION} (fields it does not know are ignored)")
    if log.torn:
        out.append("the last line is torn (the writer stopped mid-line); it was skipped")
    if log.malformed:
        reasons = "; ".join(text(p) for p in log.problems[:3])
        out.append(f"{log.malformed} malformed line(s) skipped ({reasons})")
    out += [f"events lost: seq jumps from {a} to {b} ({b - a - 1} missing)"
            for a, b in log.seq_gaps]
    if log.seq_gaps.dropped:
        out.append(f"… and {log.seq_gaps.dropped} earlier seq gap(s)")
    if log.dropped:
        out.append(f"{log.dropped:,} epoch/layer rows not kept (the log is larger than the "
                   f"report holds)")
    return out


def _state_problems(log: RunLog, s: int, st: StateLog) -> List[str]:
    out = []
    want = planned_epochs(log, s)
    done = sorted(st.epochs)
    gaps = missing_epochs(log, s)
    if gaps and st.ended is not None:
        out.append(f"state {s}: no `epoch_ended` for epoch(s) {', '.join(map(str, gaps[:20]))}")
    elif gaps and done and gaps[0] < done[-1]:
        holes = [g for g in gaps if g < done[-1]]
        out.append(f"state {s}: epoch(s) {', '.join(map(str, holes[:20]))} are missing before "
                   f"epoch {done[-1]}")
    if st.duplicate_epochs:
        out.append(f"state {s}: epoch(s) {', '.join(map(str, st.duplicate_epochs[:20]))} "
                   f"ended twice in the log")
    if st.started is None:
        out.append(f"state {s}: `state_started` is missing")
    if st.ended is None:
        out.append(f"state {s}: not finished ({len(done)}"
                   f"{'' if want is None else '/' + str(want)} epochs logged)")
    return out


def missing_items(run: LoggedRun) -> List[str]:
    """What the log lacks or could not read, as Markdown bullet texts."""
    log = run.log
    out = _log_problems(log)
    for s, st in sorted(log.states.items()):
        out += _state_problems(log, s, st)
    total = log.states_total
    if total is not None:
        never = [s for s in range(total) if s not in log.states]
        if never:
            out.append(f"state(s) {', '.join(map(str, never[:20]))} of {total} not started")
    if log.ended is None:
        out.append("`run_ended` is missing: " + (
            "the engine is still running" if run.engine_alive else
            "the engine process is gone without a word (killed, out of memory, machine down)"
            if run.engine_alive is False else
            "the run is still going elsewhere, or its engine died without a word"))
    return out


def title(run: LoggedRun) -> str:
    st = run.log.started
    out = f"# Pruning report: {text(run.name)}"
    if st is not None:
        out += (f" — {upper(st['method'])} · {text(st['sorting'])} ranking · heads "
                f"{fmt.ratios(st['head_ratio'])}, MLP {fmt.ratios(st['mlp_ratio'])}")
    return out


def _model_line(st: dict) -> str:
    m = st["model"] or {}
    heads, neurons = m.get("heads_per_block") or [], m.get("neurons_per_block") or []
    same = heads and len(set(heads)) == 1 and neurons and len(set(neurons)) == 1
    return (f"**Model**: {text(m.get('name'))} "
            f"({text(m.get('weights_source'))}) · {fmt.count(m.get('params'))} "
            f"parameters · {fmt.count(m.get('prunable_weights'))} prunable weights · "
            f"{fmt.count(m.get('blocks'))} blocks"
            + (f" × {heads[0]} heads, {neurons[0]:,} MLP neurons per block" if same else ""))


def _config_lines(log: RunLog) -> List[str]:
    st = log.started
    d = st["data"] or {}
    rate, rewind = config_value(log, "prune", "rate"), config_value(log, "prune", "rewind")
    lines = [
        f"**Data**: {text(d.get('dataset'))} · {fmt.count(d.get('train'))} train "
        f"/ {fmt.count(d.get('val'))} val / {fmt.count(d.get('test'))} test images · "
        f"{fmt.count(d.get('num_classes'))} classes · {fmt.count(d.get('img_size'))} px",
        _model_line(st),
        f"**Method**: {upper(st['method'])} · ranking **{text(st['sorting'])}** · "
        f"criterion {text(st['criterion'])} · head ratio {fmt.ratios(st['head_ratio'])} · MLP "
        f"ratio {fmt.ratios(st['mlp_ratio'])}"
        + (f" · element-wise rate {fmt.ratios(rate)}" if rate is not None else "")
        + (f" · rewind {text(rewind)}" if rewind else ""),
        f"**Schedule**: {fmt.count(st['states'])} states × {fmt.count(st['epochs'])} epochs · "
        f"{fmt.count(st['batches_per_epoch'])} batches per epoch",
        f"**Where**: {text(st['host'])} · {text(st['device'])}"
        f" · pid {fmt.count(st['pid'])} · started {fmt.when(st['time'])}"]
    if st["versions"]:
        lines.append("**Versions**: " + " · ".join(f"{text(k)} {text(v)}"
                                                   for k, v in st["versions"].items()))
    return lines


def configuration(log: RunLog) -> List[str]:
    if log.started is None:
        return heading(2, "Configuration") + [
            "_Not available: the log has no `run_started` event._", ""]
    lines = _config_lines(log)
    if log.resumed:
        lines.append(f"**Resumed** {log.resumed.count}×: " + "; ".join(
            f"state {fmt.count(r['from_state'])} epoch {fmt.count(r['from_epoch'])} batch "
            f"{fmt.count(r['from_batch'])} at {fmt.when(r['time'])}" for r in log.resumed))
    return heading(2, "Configuration") + bullets(lines) + [""]


def _best(st: StateLog):
    """(best val acc, its epoch): state_ended's, else the best epoch so far."""
    if st.ended is not None:
        return st.ended["best_val_acc"], st.ended["best_epoch"]
    scored = [(ev["val_acc"], -e) for e, ev in st.epochs.items() if ev["val_acc"] is not None]
    if not scored:
        return None, None
    acc, neg_epoch = max(scored)
    return acc, -neg_epoch


def _state_row(log: RunLog, s: int, st: StateLog) -> List[str]:
    end, last = st.ended, st.last_epoch or {}
    want = planned_epochs(log, s)
    best, best_epoch = _best(st)
    sparsity = end["sparsity"] if end is not None else (
        st.started["sparsity"] if st.started is not None else None)
    seconds = end["seconds"] if end is not None else (
        sum(e["seconds"] or 0 for e in st.epochs.values()) if st.epochs else None)
    final = end["final_val_acc"] if end is not None else last.get("val_acc")
    return [f"{s}" + ("" if end is not None else " (unfinished)"),
            f"{len(st.epochs)}" + ("" if want is None else f"/{want}"),
            fmt.number(last.get("train_acc")), fmt.number(final), fmt.number(best),
            fmt.count(best_epoch), fmt.number(end["test_acc"] if end else None),
            fmt.number(sparsity), fmt.duration(seconds)]


def _epoch_rows(log: RunLog) -> List[List[str]]:
    rows = []
    for s, st in sorted(log.states.items()):
        for e, ev in sorted(st.epochs.items()):
            rows.append([str(s), str(e), fmt.number(ev["train_loss"], 4),
                         fmt.number(ev["train_acc"]), fmt.number(ev["val_loss"], 4),
                         fmt.number(ev["val_acc"]) + (" ★" if ev["best"] else ""),
                         fmt.number(ev["test_acc"]), fmt.sci(ev["lr"]),
                         fmt.sci(ev["lambda"]), fmt.duration(ev["seconds"])])
    return rows


def states(log: RunLog) -> List[str]:
    out = heading(2, "States")
    if not log.states:
        return out + ["_No state started._", ""]
    out += table(["State", "Epochs", "Train acc %", "Val acc %", "Best val acc %", "Best epoch",
                  "Test acc %", "Sparsity %", "Time"],
                 [_state_row(log, s, st) for s, st in sorted(log.states.items())]) + [""]
    out += ["Train acc: the state's last epoch. Val acc: at the end of the state (RSST: after "
            "its hard cut). Best val acc, best epoch and test acc: the state's best epoch. "
            "Sparsity: share of the prunable weights that are zero at the end of the state.",
            ""] + heading(3, "Epochs")
    out += table(["State", "Epoch", "Train loss", "Train acc %", "Val loss", "Val acc %",
                  "Test acc %", "LR", "λ", "Time"], _epoch_rows(log))
    return out + ["", "★ a new best val acc of its state at that epoch.", ""]


def _where(ev: dict) -> str:
    parts = [f"{k} {ev[k]}" for k in ("state", "epoch", "batch") if ev.get(k) is not None]
    return f"\\[{', '.join(parts)}\\] " if parts else ""


def messages(log: RunLog) -> List[str]:
    """Errors, then warnings (repeats counted), each on one line."""
    if not log.warnings and not log.errors:
        return []
    lines = [f"❌ {_where(ev)}{text(ev['message'])}" for ev in log.errors]
    counts: dict = {}
    for ev in log.warnings:
        counts[ev["message"]] = counts.get(ev["message"], 0) + 1
    for ev in log.warnings:
        n = counts.pop(ev["message"], 0)
        if n:
            lines.append(f"⚠️ {_where(ev)}{text(ev['message'])}" + (f" (×{n})" if n > 1 else ""))
    for what, kept in (("errors", log.errors), ("warnings", log.warnings)):
        if kept.dropped:
            lines.append(f"… {kept.dropped:,} earlier {what} not shown ({kept.count:,} in all)")
    return heading(2, "Warnings and errors") + bullets(lines) + [""]


def figures_section(figures: Sequence[Figure], prefix: str = "", missing: str = "") -> \
        List[str]:
    """``## Figures``: each drawn figure embedded (its file name after ``prefix``) with its
    caption, each skipped one with the reason; ``missing``: why none could be drawn."""
    if missing:
        return heading(2, "Figures") + [f"_{text(missing)}_", ""]
    if not figures:
        return []
    out = heading(2, "Figures")
    for f in figures:
        if f.png is None:
            out += [f"_{text(f.title)}: {text(f.note)}._", ""]
        else:
            out += [f"![{text(f.title)}]({f.filename(prefix)})", "", f"_{text(f.caption)}_", ""]
    return out


def render(run: LoggedRun, checks: Sequence[Check], compare: Optional[LoggedRun] = None,
           figures: Sequence[str] = ()) -> str:
    """The whole report; ``figures``: the lines of :func:`figures_section`."""
    log = run.log
    lines = [title(run), "",
             f"**Status**: {status_line(run)}  ",
             f"**Source**: {Md('`' + EVENTS_FILE + '`')} ({log.events:,} events), run "
             f"directory {text(run.run_dir)}  ", ""]
    lines += configuration(log)
    missing = missing_items(run)
    if missing:
        lines += heading(2, "Missing or incomplete") + bullets(missing) + [""]
    lines += list(figures) + states(log) + pruning_steps(log) + lambda_section(log)
    lines += verification(checks)
    lines += export_section(run.exports) + messages(log)
    if compare is not None:
        lines += comparison(run, compare)
    return "\n".join(lines).rstrip() + "\n"
