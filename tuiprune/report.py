"""``tuiprune report RUN_DIR [--compare OTHER_RUN_DIR] [--out report.md]``.

Writes the experiment report the researchers used to write by hand (the seed test report), in
Markdown, from the run's event log (``docs/events.md``) — configuration, a per-state table, the
per-layer table of every pruning step with bars and the most/least pruned layers, the RSST λ
summary, a verification list computed from the data, and the export results when the run
directory holds any — and prints the same report to the terminal with Rich.

The weight checks (masks cut whole heads/neurons, no pruned weight non-zero, the structure in
force matches the log) read the final best checkpoint; they need torch and are listed as
skipped, with the reason, when torch is not installed or the run has no checkpoint. Everything
else is torch-free.

A torn or partial log is reported, not fatal: missing ``run_started``, unreadable lines, lost
lines (gaps in ``seq``), epochs without ``epoch_ended``, a state that never ended, no
``run_ended`` (still running, or the engine died) are listed under "Missing or incomplete".
"""

from __future__ import annotations

import json
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from engine.errors import UserError
from engine.keep import expected_kept
from engine.events import EVENTS_FILE as LOG_NAME
from engine.events import SCHEMA_VERSION as KNOWN_VERSION

PASS, FAIL, SKIP = "pass", "fail", "skip"
MARK = {PASS: "✅", FAIL: "❌", SKIP: "➖"}
CHECKPOINT_RE = re.compile(r"^state(\d+)_best\.pt$")


# ============================================================================ reading the log

@dataclass
class StateInfo:
    """What the log says about one pruning state."""

    state: int
    started: Optional[dict] = None
    epochs: Dict[int, dict] = field(default_factory=dict)     # epoch → epoch_ended
    epochs_started: set = field(default_factory=set)
    duplicate_epochs: List[int] = field(default_factory=list)
    ended: Optional[dict] = None
    hard_cut: Optional[dict] = None
    lam_first: Optional[dict] = None
    lam_last: Optional[dict] = None
    lam_events: int = 0
    lam_updates: int = 0          # optimizer steps with a λ update (summed over ramp restarts)
    lam_ramps: int = 0
    _lam_seg_max: int = 0

    def add_lambda(self, ev: dict) -> None:
        step = ev.get("step")
        if self.lam_first is None:
            self.lam_first = ev
        self.lam_events += 1
        if isinstance(step, int):
            prev = self.lam_last.get("step") if self.lam_last else None
            if prev is None or not isinstance(prev, int) or step < prev:   # a (new) ramp
                self.lam_updates += self._lam_seg_max
                self._lam_seg_max = 0
                self.lam_ramps += 1
            self._lam_seg_max = max(self._lam_seg_max, step)
        self.lam_last = ev

    @property
    def lambda_updates(self) -> int:
        return self.lam_updates + self._lam_seg_max


@dataclass
class Run:
    """A run directory read once: events grouped by what the report needs (batch events are
    not kept, so a long log costs little memory)."""

    run_dir: Path
    started: Optional[dict] = None
    ended: Optional[dict] = None
    states: Dict[int, StateInfo] = field(default_factory=dict)
    pruned: Dict[int, dict] = field(default_factory=dict)       # step → pruned event
    resumed: List[dict] = field(default_factory=list)
    warnings: List[dict] = field(default_factory=list)
    errors: List[dict] = field(default_factory=list)
    checkpoints: List[dict] = field(default_factory=list)
    events: int = 0
    bad_lines: int = 0
    torn_tail: bool = False
    seq_gaps: List[Tuple[int, int]] = field(default_factory=list)   # (after seq, next seq)
    newer_version: Optional[int] = None
    first_seq: Optional[int] = None
    engine_alive: Optional[bool] = None

    def state(self, s: int) -> StateInfo:
        if s not in self.states:
            self.states[s] = StateInfo(s)
        return self.states[s]

    @property
    def name(self) -> str:
        st = self.started or {}
        return st.get("name") or st.get("run_id") or self.run_dir.name

    def ratio(self, key: str, step: int) -> Optional[float]:
        values = (self.started or {}).get(key)
        if isinstance(values, list) and step < len(values):
            return values[step]
        return values if isinstance(values, (int, float)) else None

    @property
    def method(self) -> Optional[str]:
        return (self.started or {}).get("method") or next(
            (s.started.get("method") for s in self.states.values() if s.started), None)


def read_run(run_dir: Path) -> Run:
    """Read ``RUN_DIR/events.jsonl`` (a torn last line and unreadable lines are counted)."""
    from engine.logread import iter_chunks

    run_dir = Path(run_dir)
    log = run_dir / LOG_NAME if run_dir.is_dir() else run_dir
    if run_dir.is_dir() and not log.is_file():
        raise UserError(f"{run_dir}: no {LOG_NAME} — not a run directory, or the run never "
                        f"started; pass the directory a run wrote")
    if not log.is_file():
        raise UserError(f"{run_dir}: no such run directory")
    run = Run(run_dir=log.parent)
    with open(log, "rb") as f:
        f.seek(0, 2)
        if f.tell():
            f.seek(-1, 2)
            run.torn_tail = f.read(1) != b"\n"
    last_seq = None
    for batch in iter_chunks(log):
        run.bad_lines += batch.malformed + batch.torn
        for ev in batch.events:
            run.events += 1
            seq = ev.get("seq")
            if isinstance(seq, int):
                if run.first_seq is None:
                    run.first_seq = seq
                if last_seq is not None and seq > last_seq + 1:
                    run.seq_gaps.append((last_seq, seq))
                last_seq = seq if last_seq is None else max(last_seq, seq)
            v = ev.get("v")
            if isinstance(v, int) and v > KNOWN_VERSION:
                run.newer_version = max(v, run.newer_version or 0)
            _take(run, ev)
    if run.torn_tail and run.bad_lines:
        run.bad_lines -= 1          # the torn tail is reported on its own
    from engine.pidfile import engine_alive

    run.engine_alive = engine_alive(run.run_dir)
    return run


def _take(run: Run, ev: dict) -> None:
    kind = ev.get("event")
    s = ev.get("state")
    if kind == "batch":
        return
    if kind == "run_started":
        run.started = ev
    elif kind == "run_ended":
        run.ended = ev
    elif kind == "resumed":
        run.resumed.append(ev)
    elif kind == "warning":
        run.warnings.append(ev)
    elif kind == "error":
        run.errors.append(ev)
    elif kind == "checkpoint":
        run.checkpoints.append(ev)
    elif kind == "pruned" and isinstance(ev.get("step"), int):
        run.pruned[ev["step"]] = ev
    elif not isinstance(s, int):
        return
    elif kind == "state_started":
        run.state(s).started = ev
    elif kind == "epoch_started" and isinstance(ev.get("epoch"), int):
        run.state(s).epochs_started.add(ev["epoch"])
    elif kind == "epoch_ended" and isinstance(ev.get("epoch"), int):
        st = run.state(s)
        if ev["epoch"] in st.epochs:
            st.duplicate_epochs.append(ev["epoch"])
        st.epochs[ev["epoch"]] = ev
    elif kind == "state_ended":
        run.state(s).ended = ev
    elif kind == "hard_cut":
        run.state(s).hard_cut = ev
    elif kind == "lambda":
        run.state(s).add_lambda(ev)


# ============================================================================ formatting

def pct(v, digits: int = 2) -> str:
    return "–" if not isinstance(v, (int, float)) else f"{v:.{digits}f} %"


def p2(v) -> str:
    """A percentage in a table cell (the header carries the unit)."""
    return "–" if not isinstance(v, (int, float)) else f"{v:.2f}"


def num(v) -> str:
    return "–" if not isinstance(v, (int, float)) else f"{v:,}"


def lam(v) -> str:
    return "–" if not isinstance(v, (int, float)) else f"{v:.3g}"


def duration(seconds) -> str:
    if not isinstance(seconds, (int, float)):
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s"


def bar(percent, cells: int) -> str:
    """``percent`` pruned as filled cells (█) of ``cells``; the rest kept (░)."""
    if not isinstance(percent, (int, float)):
        return ""
    filled = max(0, min(cells, round(percent / 100 * cells)))
    return "█" * filled + "░" * (cells - filled)


def when(t) -> str:
    return "–" if not isinstance(t, (int, float)) else time.strftime("%Y-%m-%d %H:%M:%S",
                                                                     time.localtime(t))


def table(header: List[str], rows: List[List[str]], align: Optional[str] = None) -> List[str]:
    """Markdown table; ``align`` is one letter per column (l/r)."""
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else ":---" for a in align]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"] + [
        "| " + " | ".join(str(c) for c in r) + " |" for r in rows]


def ratios_text(values) -> str:
    if isinstance(values, list):
        uniq = sorted(set(values))
        if len(uniq) == 1:
            return f"{uniq[0]:.0%} per step"
        return ", ".join(f"{v:.0%}" for v in values)
    return f"{values:.0%}" if isinstance(values, (int, float)) else "–"


# ============================================================================ the report

def status_line(run: Run) -> str:
    end = run.ended
    if end:
        status = end.get("status")
        icon = {"completed": "✅", "stopped": "⏹", "failed": "❌"}.get(status, "❔")
        msg = f" — {end['message']}" if end.get("message") else ""
        return f"{icon} **{status}**{msg}"
    if run.engine_alive:
        return "⏳ **running** (the engine process is alive; this report is a snapshot)"
    if run.engine_alive is False:
        return ("⚠️ **ended without `run_ended`** — the engine process is gone (killed, out "
                "of memory, or the machine went down); resume with `tuiprune run --resume`")
    return "❔ **no `run_ended`** — still running elsewhere, or the engine died without a word"


def missing_items(run: Run) -> List[str]:
    out = []
    if run.started is None:
        out.append("`run_started` is missing: the log does not begin at the start of the run "
                   "(configuration below is incomplete)")
    elif run.first_seq not in (0, None):
        out.append(f"the log starts at seq {run.first_seq}, not 0")
    if run.newer_version:
        out.append(f"the log uses schema v{run.newer_version}; this tuiprune reads "
                   f"v{KNOWN_VERSION} (fields it does not know are ignored)")
    if run.torn_tail:
        out.append("the last line is torn (the writer stopped mid-line); it was skipped")
    if run.bad_lines:
        out.append(f"{run.bad_lines} line(s) could not be read and were skipped")
    for a, b in run.seq_gaps:
        out.append(f"events lost: seq jumps from {a} to {b} ({b - a - 1} missing)")
    total_states = (run.started or {}).get("states")
    epochs = (run.started or {}).get("epochs")
    for s, st in sorted(run.states.items()):
        want = (st.started or {}).get("epochs", epochs)
        done = sorted(st.epochs)
        if isinstance(want, int):
            gaps = [e for e in range(want) if e not in st.epochs]
            if gaps and st.ended is not None:
                out.append(f"state {s}: no `epoch_ended` for epoch(s) "
                           f"{', '.join(map(str, gaps))}")
            elif gaps and done and gaps[0] < done[-1]:
                holes = [g for g in gaps if g < done[-1]]
                out.append(f"state {s}: epoch(s) {', '.join(map(str, holes))} are missing "
                           f"before epoch {done[-1]}")
        if st.duplicate_epochs:
            out.append(f"state {s}: epoch(s) {', '.join(map(str, st.duplicate_epochs))} "
                       f"ended twice in the log")
        if st.started is None:
            out.append(f"state {s}: `state_started` is missing")
        if st.ended is None:
            out.append(f"state {s}: not finished ({len(done)}"
                       f"{'/' + str(want) if isinstance(want, int) else ''} epochs logged)")
    if isinstance(total_states, int):
        never = [s for s in range(total_states) if s not in run.states]
        if never:
            out.append(f"state(s) {', '.join(map(str, never))} of {total_states} not started")
    if run.ended is None:
        out.append("`run_ended` is missing: " + (
            "the engine is still running" if run.engine_alive else
            "the engine process is gone without a word (killed, out of memory, machine down)"
            if run.engine_alive is False else
            "the run is still going elsewhere, or its engine died without a word"))
    return out


def render(run: Run, checks: List[Tuple[str, str, str]], export: List[dict],
           compare: Optional[Run] = None) -> str:
    lines: List[str] = []
    st = run.started or {}
    title = f"# Pruning report: {run.name}"
    if st:
        title += (f" — {str(st.get('method', '?')).upper()} · {st.get('sorting', '?')} ranking"
                  f" · heads {ratios_text(st.get('head_ratio'))}, MLP "
                  f"{ratios_text(st.get('mlp_ratio'))}")
    lines += [title, ""]
    sources = f"`{LOG_NAME}` ({run.events:,} events)"
    lines += [f"**Status**: {status_line(run)}  ", f"**Source**: {sources}, run directory "
              f"`{run.run_dir}`  ", ""]
    lines += _configuration(run)
    missing = missing_items(run)
    if missing:
        lines += ["## Missing or incomplete", ""] + [f"- {m}" for m in missing] + [""]
    lines += _states(run)
    lines += _pruning_steps(run)
    lines += _lambda(run)
    lines += _verification(checks)
    lines += _export(export)
    lines += _messages(run)
    if compare is not None:
        lines += _comparison(run, compare)
    return "\n".join(lines).rstrip() + "\n"


def _configuration(run: Run) -> List[str]:
    st = run.started
    if not st:
        return ["## Configuration", "", "_Not available: the log has no `run_started` event._",
                ""]
    m, d = st.get("model") or {}, st.get("data") or {}
    heads = m.get("heads_per_block") or []
    neurons = m.get("neurons_per_block") or []
    cfg = st.get("config") or {}
    prune = cfg.get("prune") or {}
    rows = [
        f"- **Data**: {d.get('dataset', '–')} · {num(d.get('train'))} train / "
        f"{num(d.get('val'))} val / {num(d.get('test'))} test images · "
        f"{num(d.get('num_classes'))} classes · {d.get('img_size', '–')} px",
        f"- **Model**: {m.get('name', '–')} ({m.get('weights_source', '–')}) · "
        f"{num(m.get('params'))} parameters · {num(m.get('prunable_weights'))} prunable "
        f"weights · {num(m.get('blocks'))} blocks"
        + (f" × {heads[0]} heads, {neurons[0]:,} MLP neurons per block"
           if heads and len(set(heads)) == 1 and neurons and len(set(neurons)) == 1 else ""),
        f"- **Method**: {str(st.get('method', '–')).upper()} · ranking **{st.get('sorting')}** "
        f"· criterion {st.get('criterion')} · head ratio {ratios_text(st.get('head_ratio'))} · "
        f"MLP ratio {ratios_text(st.get('mlp_ratio'))}"
        + (f" · element-wise rate {ratios_text(prune.get('rate'))}" if 'rate' in prune else "")
        + (f" · rewind {prune.get('rewind')}" if prune.get('rewind') else ""),
        f"- **Schedule**: {num(st.get('states'))} states × {num(st.get('epochs'))} epochs · "
        f"{num(st.get('batches_per_epoch'))} batches per epoch",
        f"- **Where**: {st.get('host', '–')} · {st.get('device', '–')} · pid "
        f"{st.get('pid', '–')} · started {when(st.get('time'))}",
    ]
    v = st.get("versions") or {}
    if v:
        rows.append("- **Versions**: " + " · ".join(f"{k} {val}" for k, val in v.items()))
    if run.resumed:
        rows.append(f"- **Resumed** {len(run.resumed)}×: " + "; ".join(
            f"state {r.get('from_state')} epoch {r.get('from_epoch')} batch "
            f"{r.get('from_batch')} at {when(r.get('time'))}" for r in run.resumed))
    return ["## Configuration", ""] + rows + [""]


def _train_acc(st: StateInfo) -> Optional[float]:
    return st.epochs[max(st.epochs)].get("train_acc") if st.epochs else None


def _state_rows(run: Run) -> List[List[str]]:
    rows = []
    want = (run.started or {}).get("epochs")
    for s, st in sorted(run.states.items()):
        end = st.ended or {}
        epochs = (st.started or {}).get("epochs", want)
        last = st.epochs[max(st.epochs)] if st.epochs else {}
        best = end.get("best_val_acc")
        best_epoch = end.get("best_epoch")
        if not end and st.epochs:       # unfinished state: best so far
            e, ev = max(st.epochs.items(), key=lambda kv: (kv[1].get("val_acc") or -1, -kv[0]))
            best, best_epoch = ev.get("val_acc"), e
        sparsity = end.get("sparsity", (st.started or {}).get("sparsity"))
        seconds = end.get("seconds") if end else (
            sum(e.get("seconds") or 0 for e in st.epochs.values()) if st.epochs else None)
        rows.append([
            str(s) + ("" if end else " (unfinished)"),
            f"{len(st.epochs)}/{epochs}" if isinstance(epochs, int) else str(len(st.epochs)),
            p2(last.get("train_acc")), p2(end.get("final_val_acc", last.get("val_acc"))),
            p2(best), "–" if best_epoch is None else str(best_epoch),
            p2(end.get("test_acc")), p2(sparsity), duration(seconds)])
    return rows


def _states(run: Run) -> List[str]:
    out = ["## States", ""]
    if not run.states:
        return out + ["_No state started._", ""]
    out += table(["State", "Epochs", "Train acc %", "Val acc %", "Best val acc %",
                  "Best epoch", "Test acc %", "Sparsity %", "Time"], _state_rows(run)) + [""]
    out += ["Train acc: the state's last epoch. Val acc: at the end of the state (RSST: after "
            "its hard cut). Best val acc, best epoch and test acc: the state's best epoch. "
            "Sparsity: share of the prunable weights that are zero at the end of the state.",
            "", "### Epochs", ""]
    rows = []
    for s, st in sorted(run.states.items()):
        for e, ev in sorted(st.epochs.items()):
            rows.append([str(s), str(e), _f(ev.get("train_loss")), p2(ev.get("train_acc")),
                         _f(ev.get("val_loss")), p2(ev.get("val_acc")) +
                         (" ★" if ev.get("best") else ""), p2(ev.get("test_acc")),
                         lam(ev.get("lr")), lam(ev.get("lambda")), duration(ev.get("seconds"))])
    out += table(["State", "Epoch", "Train loss", "Train acc %", "Val loss", "Val acc %",
                  "Test acc %", "LR", "λ", "Time"], rows) + [
        "", "★ a new best val acc of its state at that epoch.", ""]
    return out


def _f(v) -> str:
    return "–" if not isinstance(v, (int, float)) else f"{v:.4f}"


def _extremes(layers: List[dict], key: str) -> Tuple[Optional[dict], Optional[dict]]:
    vals = [l for l in layers if isinstance(l.get(key), (int, float))]
    if not vals:
        return None, None
    most = max(vals, key=lambda l: (l[key], -l.get("block", 0)))
    least = min(vals, key=lambda l: (l[key], l.get("block", 0)))
    return most, least


def _layer_table(layers: List[dict]) -> List[str]:
    rows = []
    for l in layers:
        ht, nt = l.get("heads_total"), l.get("neurons_total")
        rows.append([str(l.get("block")), p2(l.get("attn_sparsity")),
                     bar(l.get("attn_sparsity"), ht if isinstance(ht, int) and ht <= 16 else 10),
                     f"{l.get('heads_kept')}/{ht}", p2(l.get("mlp_sparsity")),
                     bar(l.get("mlp_sparsity"), 10), f"{num(l.get('neurons_kept'))}/{num(nt)}"])
    return table(["Layer", "Attn sparsity %", "Pruned", "Heads kept", "MLP sparsity %",
                  "Pruned", "Neurons kept"], rows, align="lrlrrlr")


def _structure_summary(ev: dict) -> List[str]:
    sp = ev.get("sparsity")
    out = [f"- Overall sparsity **{pct(sp)}** ({num(ev.get('zeros'))} of "
           f"{num(ev.get('total'))} prunable weights are zero) · remaining "
           f"{pct(100 - sp) if isinstance(sp, (int, float)) else '–'}",
           f"- Heads kept **{num(ev.get('heads_kept'))} / {num(ev.get('heads_total'))}** · "
           f"MLP neurons kept **{num(ev.get('neurons_kept'))} / "
           f"{num(ev.get('neurons_total'))}**"]
    layers = ev.get("layers") or []
    for label, key in (("Attention", "attn_sparsity"), ("MLP", "mlp_sparsity")):
        most, least = _extremes(layers, key)
        if most is None:
            continue
        if most[key] == least[key]:
            out.append(f"- {label}: every layer {pct(most[key])}")
            continue
        kept = (f", {most.get('heads_kept')}/{most.get('heads_total')} heads kept"
                if key == "attn_sparsity" else "")
        out.append(f"- {label}: most pruned layer {most['block']} ({pct(most[key])}{kept}), "
                   f"least pruned layer {least['block']} ({pct(least[key])})")
    return out


def _pruning_steps(run: Run) -> List[str]:
    out = []
    for k, ev in sorted(run.pruned.items()):
        applied = ev.get("applied")
        how = ("applied from state " if applied else "target that state ") + str(
            ev.get("state", k) + 1) + ("" if applied else " squeezes toward and cuts at its end")
        out += [f"## Pruning step {k} (after state {ev.get('state', k)})", "",
                f"{str(ev.get('method', '?')).upper()} · {ev.get('sorting')} ranking · criterion "
                f"{ev.get('criterion')} · head ratio {pct_ratio(ev.get('head_ratio'))} · MLP "
                f"ratio {pct_ratio(ev.get('mlp_ratio'))} · element-wise step "
                f"{pct_ratio(ev.get('rate'))} → {pct(ev.get('elementwise_sparsity'))} sparse · "
                f"{how} · took {duration(ev.get('seconds'))}", ""]
        out += _structure_summary(ev) + [""]
        out += _layer_table(ev.get("layers") or []) + [""]
        cut = run.states.get(ev.get("state", k) + 1)
        if cut is not None and cut.hard_cut is not None:
            out += _hard_cut(cut.hard_cut, ev)
    return out


def pct_ratio(v) -> str:
    return "–" if not isinstance(v, (int, float)) else f"{v * 100:.0f} %"


def _hard_cut(hc: dict, target: dict) -> List[str]:
    before, after = hc.get("val_acc_before"), hc.get("val_acc_after")
    cost = (f" ({after - before:+.2f} points)".replace("-", "−")
            if isinstance(before, (int, float)) and isinstance(after, (int, float)) else "")
    out = [f"### Hard cut at the end of state {hc.get('state')}", "",
           f"- Sparsity after the cut **{pct(hc.get('sparsity'))}** ({num(hc.get('zeros'))} of "
           f"{num(hc.get('total'))}) · heads kept {num(hc.get('heads_kept'))}/"
           f"{num(hc.get('heads_total'))} · neurons kept {num(hc.get('neurons_kept'))}/"
           f"{num(hc.get('neurons_total'))}",
           f"- Val acc before → after the cut: {pct(before)} → {pct(after)}{cost}",
           f"- L2 norm removed by the cut (near 0 when the squeeze worked): "
           f"{lam(hc.get('residual_norm'))}"]
    same = [l.get("heads_kept") for l in hc.get("layers") or []] == \
        [l.get("heads_kept") for l in target.get("layers") or []]
    out.append("- The cut structure " + ("equals" if same else "**differs from**") +
               " the target of the pruning step")
    return out + [""]


def _lambda(run: Run) -> List[str]:
    rows = []
    for s, st in sorted(run.states.items()):
        if st.lam_events == 0:
            continue
        last = st.lam_last or {}
        rows.append([str(s), lam((st.lam_first or {}).get("value")), lam(last.get("value")),
                     num(st.lambda_updates), f"{st.lam_ramps}", num(st.lam_events),
                     f"{num(last.get('regularized'))} / {num(last.get('heads'))} / "
                     f"{num(last.get('neurons'))}"])
    if not rows:
        if run.method == "rsst":
            return ["## RSST λ", "", "_No `lambda` events in the log._", ""]
        return []
    return ["## RSST λ", ""] + table(
        ["State", "λ first logged", "λ last", "Updates", "Ramps", "Events logged",
         "Squeezed weights / heads / neurons"], rows) + [
        "", "Updates: optimizer steps that updated λ (from the `step` counter, summed over ramp "
        "restarts); `lambda` events are throttled, so fewer are logged.", ""]


def _verification(checks: List[Tuple[str, str, str]]) -> List[str]:
    rows = [[MARK[status], name, detail] for status, name, detail in checks]
    return ["## Verification", ""] + table(["", "Check", "Detail"], rows, align="lll") + [""]


def _export(exports: List[dict]) -> List[str]:
    if not exports:
        return []
    from tuiprune.export import latency_rows

    out = ["## Export (compacted model)", ""]
    for doc in exports:
        s = doc.get("structure") or {}
        out += [f"`{doc.get('_dir')}` — state {doc.get('state')} ({doc.get('checkpoint')}) · "
                f"heads {s.get('heads_kept')}/{s.get('heads_total')} · neurons "
                f"{num(s.get('neurons_kept'))}/{num(s.get('neurons_total'))} · max |Δ output| "
                f"{(doc.get('equivalence') or {}).get('max_abs_diff', float('nan')):.2e}", ""]
        rows = []
        for label, key in (("Parameters", "params"), ("MACs per image", "macs")):
            r = doc.get(key) or {}
            rows.append([label, num(r.get("before")), num(r.get("after")),
                         f"{r['ratio']:.2f}×" if isinstance(r.get("ratio"), float) else "–"])
        rows += [[a, b, c, d + "×"] for a, b, c, d in latency_rows(doc.get("latency") or {})]
        out += table(["", "Before (masked)", "After (compacted)", "Ratio"], rows) + [""]
    return out


def _messages(run: Run) -> List[str]:
    if not run.warnings and not run.errors:
        return []
    out = ["## Warnings and errors", ""]
    for ev in run.errors:
        out.append(f"- ❌ {_where(ev)}{ev.get('message')}")
    seen: Dict[str, int] = {}
    for ev in run.warnings:
        seen[ev.get("message", "")] = seen.get(ev.get("message", ""), 0) + 1
    for ev in run.warnings:
        msg = ev.get("message", "")
        if msg in seen:
            n = seen.pop(msg)
            out.append(f"- ⚠️ {_where(ev)}{msg}" + (f" (×{n})" if n > 1 else ""))
    return out + [""]


def _where(ev: dict) -> str:
    parts = [f"{k} {ev[k]}" for k in ("state", "epoch", "batch") if ev.get(k) is not None]
    return f"[{', '.join(parts)}] " if parts else ""


# ============================================================================ verification

def log_checks(run: Run) -> List[Tuple[str, str, str]]:
    checks = []
    steps = [(k, ev) for k, ev in sorted(run.pruned.items())]
    structures = steps + [(f"cut {s}", st.hard_cut) for s, st in sorted(run.states.items())
                          if st.hard_cut]
    # whole structures: per-layer sparsity is exactly the share of pruned heads / neurons
    bad = []
    for k, ev in structures:
        for l in ev.get("layers") or []:
            for what, sp, kept, tot in (("attention", "attn_sparsity", "heads_kept",
                                         "heads_total"),
                                        ("MLP", "mlp_sparsity", "neurons_kept",
                                         "neurons_total")):
                if not all(isinstance(l.get(x), (int, float)) for x in (sp, kept, tot)):
                    continue
                whole = 100 * (1 - l[kept] / l[tot])
                if abs(l[sp] - whole) > 0.01:
                    bad.append(f"step {k} layer {l.get('block')}: {what} sparsity {pct(l[sp])} "
                               f"≠ {l[tot] - l[kept]}/{l[tot]} pruned ({pct(whole)})")
    if structures:
        checks.append((FAIL if bad else PASS, "Pruning steps cut whole heads and neurons (log)",
                       "; ".join(bad[:3]) if bad else
                       f"per-layer sparsity = pruned heads/neurons share in all "
                       f"{sum(len(ev.get('layers') or []) for _, ev in structures)} layer rows"))
    # sparsity equals the target ratios
    if steps:
        checks.append(_target_check(run, steps))
    # the structure in force is what the next state trains with
    bad = []
    for k, ev in steps:
        nxt = run.states.get(ev.get("state", k) + 1)
        if nxt is None:
            continue
        if ev.get("applied"):
            got = (nxt.started or {}).get("sparsity")
            if isinstance(got, (int, float)) and isinstance(ev.get("sparsity"), (int, float)) \
                    and abs(got - ev["sparsity"]) > 0.01:
                bad.append(f"state {nxt.state} started at {pct(got)}, step {k} cut to "
                           f"{pct(ev['sparsity'])}")
        elif nxt.ended is not None and nxt.hard_cut is None:
            bad.append(f"state {nxt.state} ended without the hard cut of step {k}")
        elif nxt.hard_cut is not None and isinstance(nxt.hard_cut.get("sparsity"), (int, float)) \
                and abs(nxt.hard_cut["sparsity"] - (ev.get("sparsity") or 0)) > 0.01:
            bad.append(f"hard cut of state {nxt.state} reached {pct(nxt.hard_cut['sparsity'])}, "
                       f"target {pct(ev.get('sparsity'))}")
    if steps:
        rsst = any(not ev.get("applied") for _, ev in steps)
        checks.append((FAIL if bad else PASS, "Each pruning step is in force in the next state",
                       "; ".join(bad[:3]) if bad else
                       "the next state ends with the hard cut to the step's target sparsity"
                       if rsst else "the next state starts at the step's sparsity"))
    # no crash / resume gaps
    gaps = []
    for s, st in sorted(run.states.items()):
        want = (st.started or {}).get("epochs", (run.started or {}).get("epochs"))
        if isinstance(want, int) and st.ended is not None:
            lost = [e for e in range(want) if e not in st.epochs]
            if lost:
                gaps.append(f"state {s} lacks epoch(s) {', '.join(map(str, lost))}")
        if st.duplicate_epochs:
            gaps.append(f"state {s} logged epoch(s) {', '.join(map(str, st.duplicate_epochs))} "
                        f"twice")
    known = sorted(run.states)
    if known and known != list(range(known[0], known[-1] + 1)):
        gaps.append(f"states {known} are not consecutive")
    gaps += [f"seq {a} → {b}" for a, b in run.seq_gaps]
    resumes = f"; resumed {len(run.resumed)}× without a gap" if run.resumed and not gaps else ""
    if not run.states and not gaps:
        checks.append((SKIP, "No crash or resume gaps", "no state in the log"))
        return checks
    checks.append((FAIL if gaps else PASS, "No crash or resume gaps",
                   "; ".join(gaps[:4]) if gaps else
                   f"every epoch of every finished state logged exactly once, seq continuous"
                   f"{resumes}"))
    return checks


def _target_check(run: Run, steps: List[Tuple[int, dict]]) -> Tuple[str, str, str]:
    name = "Sparsity equals the target"
    bad, unknown, ok = [], [], set()
    for k, ev in steps:
        layers = ev.get("layers") or []
        sorting = ev.get("sorting") or (run.started or {}).get("sorting")
        prev = _previous_kept(run, k, layers)
        if prev is None:
            unknown.append(f"step {k}: " + ("the previous step is not in the log" if k and
                                            k - 1 not in run.pruned else
                                            "no per-layer counts in the log"))
            continue
        for what, kept, ratio, p in (("heads", "heads_kept", ev.get("head_ratio"), prev[0]),
                                     ("neurons", "neurons_kept", ev.get("mlp_ratio"), prev[1])):
            if not isinstance(ratio, (int, float)) or sorting not in ("global", "layer-wise"):
                unknown.append(f"step {k}: no {what} ratio or ranking mode in the log")
                continue
            want = expected_kept(p, ratio, sorting)
            got = ([sum(l[kept] for l in layers)] if sorting == "global"
                   else [l[kept] for l in layers])
            if want == got:
                ok.add(k)
            else:
                bad.append(f"step {k}: {what} kept {got if len(got) > 1 else got[0]}, target "
                           f"{want if len(want) > 1 else want[0]} ({sorting}, ratio "
                           f"{pct_ratio(ratio)} of {sum(p)} alive)")
    if bad:
        return FAIL, name, "; ".join(bad[:3])
    if not ok:
        return SKIP, name, "; ".join(unknown[:3])
    how = "per block" if (run.started or {}).get("sorting") == "layer-wise" else "over all blocks"
    detail = (f"heads and neurons kept = max(1, ⌊alive × (1 − ratio)⌋) {how} at "
              f"{len(ok)} of {len(steps)} pruning step(s)")
    return PASS, name, detail + ("; not checked: " + "; ".join(unknown[:3]) if unknown else "")


def _previous_kept(run: Run, k: int, layers: List[dict]):
    """Heads and neurons alive per block before step k (totals at step 0)."""
    if not layers or not all(isinstance(l.get(x), int) for l in layers
                             for x in ("heads_kept", "heads_total", "neurons_kept",
                                       "neurons_total")):
        return None
    if k == 0:
        return [l["heads_total"] for l in layers], [l["neurons_total"] for l in layers]
    prev = run.pruned.get(k - 1)
    if prev is None or len(prev.get("layers") or []) != len(layers):
        return None
    pl = prev["layers"]
    return [l.get("heads_kept") for l in pl], [l.get("neurons_kept") for l in pl]


def final_checkpoint(run: Run) -> Optional[Path]:
    ck = run.run_dir / "checkpoints"
    found = {}
    if ck.is_dir():
        for p in ck.iterdir():
            m = CHECKPOINT_RE.match(p.name)
            if m:
                found[int(m.group(1))] = p
    return found[max(found)] if found else None


def structure_in_force(run: Run, state: int) -> Optional[dict]:
    """The pruned/hard_cut event whose structure a best checkpoint of ``state`` holds: the
    latest Refill step applied before the state, or RSST hard cut up to its end."""
    found = [ev for k, ev in run.pruned.items() if ev.get("applied") and ev.get("state", k) < state]
    found += [st.hard_cut for s, st in run.states.items() if st.hard_cut is not None and s <= state]
    return max(found, key=lambda ev: ev.get("seq", -1)) if found else None


def weight_checks(run: Run) -> List[Tuple[str, str, str]]:
    """Checks on the final best checkpoint's weights and masks (need torch)."""
    names = ("Final checkpoint: masks cut whole heads and neurons",
             "Final checkpoint: no pruned weight is non-zero",
             "Final checkpoint: structure and sparsity match the log")
    path = final_checkpoint(run)
    if path is None:
        return [(SKIP, n, "no checkpoints/state<N>_best.pt in the run directory") for n in names]
    try:
        import torch  # noqa: F401
    except ImportError:
        return [(SKIP, n, "torch is not installed here") for n in names]
    from engine import compact as C
    from engine.checkpoint import build_model, load_checkpoint

    rel = path.relative_to(run.run_dir)
    try:
        ckpt = load_checkpoint(path)
        model = build_model(ckpt["model_spec"])
        model.load_state_dict(ckpt["model"])
    except (UserError, KeyError, RuntimeError) as exc:
        return [(FAIL, names[0], f"`{rel}` cannot be loaded: {exc}")] + [
            (SKIP, n, "checkpoint not loadable") for n in names[1:]]
    masks = ckpt.get("masks")
    out = []
    try:
        kept = C.kept_from_masks(model, masks)
        out.append((PASS, names[0], f"`{rel}`: {kept.heads_kept}/{kept.heads_total} heads, "
                    f"{kept.neurons_kept:,}/{kept.neurons_total:,} neurons kept, no partial "
                    f"structure" if masks else f"`{rel}` has no masks (nothing pruned)"))
    except ValueError as exc:
        return [(FAIL, names[0], f"`{rel}`: {exc}")] + [
            (SKIP, n, "masks are not whole structures") for n in names[1:]]
    state_dict = ckpt["model"]
    nonzero, zeros, total = 0, 0, 0
    for name, mask in (masks or {}).items():
        w = state_dict[name + ".weight"]
        pruned = mask == 0
        nonzero += int((w[pruned] != 0).sum())
    from engine.structure import describe

    for blk in describe(model):
        for lin_name in blk.names:
            w = state_dict[lin_name + ".weight"]
            zeros += int((w == 0).sum())
            total += w.numel()
    out.append((FAIL if nonzero else PASS, names[1],
                f"{nonzero:,} pruned weights are non-zero in `{rel}`" if nonzero else
                f"all weights the masks prune are exactly 0 in `{rel}`"))
    state = ckpt.get("state")
    ev = structure_in_force(run, state) if isinstance(state, int) else None
    ended = run.states.get(state).ended if isinstance(state, int) and state in run.states \
        else None
    problems = []
    if ev is not None:
        logged = [l.get("heads_kept") for l in ev.get("layers") or []]
        if logged != [len(b.heads_kept) for b in kept.blocks]:
            problems.append(f"heads kept per block {[len(b.heads_kept) for b in kept.blocks]} "
                            f"≠ log {logged}")
        logged = [l.get("neurons_kept") for l in ev.get("layers") or []]
        if logged != [len(b.neurons_kept) for b in kept.blocks]:
            problems.append("neurons kept per block differ from the log")
    elif masks:
        problems.append("the log has no pruning step in force for this state")
    sparsity = 100.0 * zeros / total if total else 0.0
    if ended is not None and isinstance(ended.get("sparsity"), (int, float)) and \
            abs(ended["sparsity"] - sparsity) > 0.01:
        problems.append(f"zeros {pct(sparsity)} ≠ logged state sparsity {pct(ended['sparsity'])}")
    out.append((FAIL if problems else PASS, names[2], "; ".join(problems) if problems else
                f"state {state}: {zeros:,} of {total:,} prunable weights zero "
                f"({pct(sparsity)})" + (", per-block structure equals the log" if ev else "")))
    return out


def find_exports(run_dir: Path) -> List[dict]:
    from tuiprune.export import EXPORT_FILE

    out = []
    for p in sorted(Path(run_dir).glob(f"*/{EXPORT_FILE}")):
        try:
            doc = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict):
            doc["_dir"] = str(p.parent.relative_to(run_dir))
            out.append(doc)
    return out


# ============================================================================ comparison

def _spread(layers: List[dict], key: str) -> str:
    vals = [l[key] for l in layers if isinstance(l.get(key), (int, float))]
    if not vals:
        return "–"
    sd = statistics.pstdev(vals) if len(vals) > 1 else 0.0
    return f"{min(vals):.2f} … {max(vals):.2f} % (σ {sd:.2f})"


def _comparison(a: Run, b: Run) -> List[str]:
    out = [f"## Comparison: {a.name} (A) vs {b.name} (B)", ""]
    sa, sb = a.started or {}, b.started or {}
    rows = []
    for key in ("method", "sorting", "criterion", "head_ratio", "mlp_ratio", "states",
                "epochs"):
        va, vb = sa.get(key), sb.get(key)
        fa = ratios_text(va) if key.endswith("ratio") else ("–" if va is None else str(va))
        fb = ratios_text(vb) if key.endswith("ratio") else ("–" if vb is None else str(vb))
        rows.append([key, fa, fb, "" if va == vb else "≠"])
    out += table(["Setting", "A", "B", ""], rows, align="llll") + [""]
    out += ["### Accuracy and sparsity per state", ""]
    rows = []
    for s in sorted(set(a.states) | set(b.states)):
        ea = (a.states.get(s) or StateInfo(s)).ended or {}
        eb = (b.states.get(s) or StateInfo(s)).ended or {}
        ba, bb = ea.get("best_val_acc"), eb.get("best_val_acc")
        diff = f"{ba - bb:+.2f}" if isinstance(ba, (int, float)) and isinstance(
            bb, (int, float)) else "–"
        rows.append([str(s), p2(ba), p2(bb), diff, p2(ea.get("sparsity")),
                     p2(eb.get("sparsity")), p2(ea.get("test_acc")), p2(eb.get("test_acc"))])
    out += table(["State", "A best val acc %", "B best val acc %", "A − B", "A sparsity %",
                  "B sparsity %", "A test acc %", "B test acc %"], rows) + [""]
    out += ["### Spread of per-layer sparsity per pruning step", ""]
    rows = []
    for k in sorted(set(a.pruned) | set(b.pruned)):
        la = (a.pruned.get(k) or {}).get("layers") or []
        lb = (b.pruned.get(k) or {}).get("layers") or []
        rows.append([str(k), _spread(la, "attn_sparsity"), _spread(lb, "attn_sparsity"),
                     _spread(la, "mlp_sparsity"), _spread(lb, "mlp_sparsity"),
                     p2((a.pruned.get(k) or {}).get("sparsity")),
                     p2((b.pruned.get(k) or {}).get("sparsity"))])
    out += table(["Step", "A attention", "B attention", "A MLP", "B MLP", "A overall %",
                  "B overall %"], rows) + [
        "", "Per-layer sparsity: lowest … highest layer (σ = standard deviation over layers); "
        "a global ranking spreads it, a layer-wise one keeps it even.", ""]
    common = sorted(set(a.pruned) & set(b.pruned))
    if common:
        k = common[-1]
        la = {l.get("block"): l for l in a.pruned[k].get("layers") or []}
        lb = {l.get("block"): l for l in b.pruned[k].get("layers") or []}
        rows = []
        for blk in sorted(set(la) | set(lb), key=lambda x: (x is None, x)):
            x, y = la.get(blk, {}), lb.get(blk, {})
            rows.append([str(blk), p2(x.get("attn_sparsity")), bar(x.get("attn_sparsity"), 10),
                         p2(y.get("attn_sparsity")), bar(y.get("attn_sparsity"), 10),
                         p2(x.get("mlp_sparsity")), p2(y.get("mlp_sparsity"))])
        out += [f"### Per layer at pruning step {k}", ""] + table(
            ["Layer", "A attn %", "A", "B attn %", "B", "A MLP %", "B MLP %"], rows,
            align="lrlrlrr") + [""]
    return out


# ============================================================================ entry point

def build_report(run_dir: Path, compare: Optional[Path] = None) -> str:
    run = read_run(run_dir)
    checks = log_checks(run) + weight_checks(run)
    other = read_run(compare) if compare is not None else None
    return render(run, checks, find_exports(run.run_dir), other)


def report_main(run_dir: Path, compare: Optional[Path] = None, out: Optional[Path] = None) -> int:
    text = build_report(Path(run_dir), Path(compare) if compare is not None else None)
    if out is not None:
        out = Path(out)
        if out.is_dir():
            raise UserError(f"--out {out}: is a directory; give a file name such as report.md")
        tmp = out.with_name(f".{out.name}.tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(out)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise UserError(f"--out {out}: cannot write ({exc.strerror})") from None
    from rich.console import Console
    from rich.markdown import Markdown

    console = Console()
    console.print(Markdown(text))
    if out is not None:
        console.print(f"[dim]report written to {out}[/dim]", soft_wrap=True)
    return 0
