"""The report's verification rows computed from the event log alone (torch-free): one function
per row, each returning a :class:`Check`. The rows that read checkpoint weights are in
:mod:`tuiprune.report.weight_checks`.

The targets are computed here from the configuration (``run_started``), by the rule the README
and ``docs/algorithm.md`` state, written out again on purpose: the engine's own keep-count
function is not used, so a wrong rule in the engine shows up as a failed row.
"""

from __future__ import annotations

import math

from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from engine.runlog import RunLog
from tuiprune.report.log import missing_epochs
from tuiprune.format import pct

PASS, FAIL, SKIP = "pass", "fail", "skip"
MARK = {PASS: "✅", FAIL: "❌", SKIP: "➖"}
SHOWN = 3        # problems named in a row's detail
TOLERANCE = 0.01  # percent: events round sparsities to 4 decimals


class Check(NamedTuple):
    status: str
    name: str
    detail: str


def verdict(name: str, problems: Sequence[str], passed: str) -> Check:
    """FAIL naming the first problems, else PASS with ``passed``."""
    if problems:
        more = f" (and {len(problems) - SHOWN} more)" if len(problems) > SHOWN else ""
        return Check(FAIL, name, "; ".join(problems[:SHOWN]) + more)
    return Check(PASS, name, passed)


# ---------------------------------------------------------------- the configured targets
def planned_kept(alive: Sequence[int], ratios: Sequence[float], sorting: str,
                 multiple: int = 1) -> List[List[int]]:
    """Structures alive after each pruning step, from ``alive`` per block before the first:
    each step keeps ``max(1, int(alive × (1 − ratio)))`` of what is still alive (ratios
    compound), over all blocks together (``global``: one total) or per block; layer-wise
    counts are then rounded down to a ``multiple`` (``prune.round_to``) unless below one.
    (A global total with a multiple > 1 is only bounded: see :func:`_rounding_problems`.)"""
    out = []
    now = list(alive)
    for ratio in ratios:
        if sorting == "global":
            now = [max(1, int(sum(now) * (1 - ratio)))]
        else:
            now = [max(1, int(a * (1 - ratio))) for a in now]
            now = [n - n % multiple if n >= multiple else n for n in now]
        out.append(now)
    return out


def multiples(log: RunLog) -> Tuple[int, int]:
    """(heads, neurons) per multiple under ``prune.round_to``: neurons come in multiples of
    ``round_to``, heads in the fewest whose width (heads × head_dim) is one."""
    round_to = config_value(log, "prune", "round_to")
    round_to = round_to if isinstance(round_to, int) and round_to > 1 else 1
    dims = (log.started["model"] or {}).get("head_dims") if log.started else None
    per_head = max((round_to // math.gcd(round_to, d) for d in dims or () if d), default=1)
    return per_head, round_to


def config_value(log: RunLog, section: str, key: str) -> Any:
    """``run_started.config[section][key]``, or None (the config is a free-form object)."""
    cfg = log.started["config"] if log.started is not None else None
    part = cfg.get(section) if isinstance(cfg, dict) else None
    return part.get(key) if isinstance(part, dict) else None


def plan(log: RunLog) -> Optional[Dict[str, Any]]:
    """What the configuration asks for: per block totals, per-step ratios and the ranking,
    or None when the log does not say (no ``run_started``)."""
    st = log.started
    if st is None:
        return None
    model = st["model"] or {}
    fields = (model.get("heads_per_block"), model.get("neurons_per_block"), st["head_ratio"],
              st["mlp_ratio"], st["sorting"])
    if any(f is None for f in fields) or st["sorting"] not in ("global", "layer-wise"):
        return None
    heads, neurons, head_ratio, mlp_ratio, sorting = fields
    return {"heads": heads, "neurons": neurons, "sorting": sorting,
            "head_ratio": head_ratio, "mlp_ratio": mlp_ratio}


def kept_in(ev: Dict[str, Any], sorting: str, key: str) -> Optional[List[int]]:
    """An event's ``heads_kept``/``neurons_kept``: the total (global) or per block."""
    if sorting == "global":
        return None if ev[key] is None else [ev[key]]
    layers = ev["layers"]
    return None if not layers else [layer[key] for layer in layers]


# ---------------------------------------------------------------- the rows
def whole_structures_in_log(log: RunLog) -> Optional[Check]:
    """Per-layer sparsity of every step and cut is exactly the share of pruned structures."""
    name = "Pruning steps cut whole heads and neurons (log)"
    structures = [(f"step {k}", ev) for k, ev in sorted(log.pruned.items())]
    structures += [(f"cut {s}", st.hard_cut) for s, st in sorted(log.states.items())
                   if st.hard_cut is not None]
    if not structures:
        return None
    bad, rows = [], 0
    for where, ev in structures:
        for layer in ev["layers"] or ():
            rows += 1
            for what, sp, kept, total in (("attention", "attn_sparsity", "heads_kept",
                                           "heads_total"),
                                          ("MLP", "mlp_sparsity", "neurons_kept",
                                           "neurons_total")):
                if layer[total] == 0:
                    continue
                whole = 100 * (1 - layer[kept] / layer[total])
                if abs(layer[sp] - whole) > TOLERANCE:
                    bad.append(f"{where} layer {layer['block']}: {what} sparsity "
                               f"{pct(layer[sp])} ≠ {layer[total] - layer[kept]}/"
                               f"{layer[total]} pruned ({pct(whole)})")
    return verdict(name, bad, f"per-layer sparsity = share of pruned heads/neurons in all "
                              f"{rows} layer rows")


def _rounding_problems(k: int, ev: dict, what: str, key: str, multiple: int,
                       bound: int) -> List[str]:
    """A global step under ``round_to``: the total may fall below the ratio's count (each
    block rounds down) but never above it, and every block keeps a multiple (or fewer)."""
    out = []
    if ev[key] is not None and ev[key] > bound:
        out.append(f"step {k}: {what} kept {ev[key]}, more than the target {bound}")
    for layer in ev["layers"] or ():
        n = layer[key]
        if n >= multiple and n % multiple:
            out.append(f"step {k} layer {layer['block']}: {n} {what} kept, not a multiple of "
                       f"{multiple} (prune.round_to)")
    return out


def _step_problems(k: int, ev: dict, want: Dict[str, List[int]], p: Dict[str, Any]) -> List[str]:
    out = []
    for what, key, ratio_key in (("heads", "heads_kept", "head_ratio"),
                                 ("neurons", "neurons_kept", "mlp_ratio")):
        configured = p[ratio_key][k]
        if ev[ratio_key] is not None and abs(ev[ratio_key] - configured) > 1e-9:
            out.append(f"step {k}: {what} ratio {ev[ratio_key]:g} logged, {configured:g} "
                       f"configured")
        got = kept_in(ev, p["sorting"], key)
        multiple = p["multiple"][what]
        if p["sorting"] == "global" and multiple > 1:
            out += _rounding_problems(k, ev, what, key, multiple, want[what][0])
        elif got is not None and got != want[what]:
            out.append(f"step {k}: {what} kept {got if len(got) > 1 else got[0]}, target "
                       f"{want[what] if len(want[what]) > 1 else want[what][0]} "
                       f"({p['sorting']}, ratio {configured:g})")
    if ev["zeros"] is not None and ev["total"] and ev["sparsity"] is not None:
        share = 100 * ev["zeros"] / ev["total"]
        if abs(share - ev["sparsity"]) > TOLERANCE:
            out.append(f"step {k}: sparsity {pct(ev['sparsity'])} ≠ {ev['zeros']:,} of "
                       f"{ev['total']:,} zero ({pct(share)})")
    return out


def _global_bounds(log: RunLog, k: int, p: Dict[str, Any]) -> Dict[str, List[int]]:
    """The most a global step ``k`` may keep under ``round_to``: the ratio's count of what
    the previous step (in the log) left alive."""
    prev = log.pruned.get(k - 1) if k else None
    out = {}
    for what, key, ratio_key, totals in (("heads", "heads_kept", "head_ratio", p["heads"]),
                                         ("neurons", "neurons_kept", "mlp_ratio",
                                          p["neurons"])):
        alive = prev[key] if prev is not None and prev[key] is not None else sum(totals)
        out[what] = [max(1, int(alive * (1 - p[ratio_key][k])))]
    return out


def sparsity_equals_target(log: RunLog) -> Optional[Check]:
    """Every step kept what the configured ratios ask for (compounding on what is alive)."""
    name = "Sparsity equals the target"
    if not log.pruned:
        return None
    p = plan(log)
    if p is None:
        return Check(SKIP, name, "the log has no run_started with the model's heads, "
                                 "neurons, ratios and ranking")
    steps = min(len(p["head_ratio"]), len(p["mlp_ratio"]))
    m_heads, m_neurons = multiples(log)
    p["multiple"] = {"heads": m_heads, "neurons": m_neurons}
    heads = planned_kept(p["heads"], p["head_ratio"][:steps], p["sorting"], m_heads)
    neurons = planned_kept(p["neurons"], p["mlp_ratio"][:steps], p["sorting"], m_neurons)
    bad = []
    for k, ev in sorted(log.pruned.items()):
        if k >= steps:
            bad.append(f"step {k}: the configuration has only {steps} step(s)")
            continue
        want = {"heads": heads[k], "neurons": neurons[k]}
        if p["sorting"] == "global" and max(m_heads, m_neurons) > 1:
            want = _global_bounds(log, k, p)  # rounding makes the totals only bounded
        bad += _step_problems(k, ev, want, p)
    how = "per block" if p["sorting"] == "layer-wise" else "over all blocks"
    rounded = (f", each block rounded down to a multiple of {m_neurons} neurons and "
               f"{m_heads} head(s) (prune.round_to)" if max(m_heads, m_neurons) > 1 else "")
    return verdict(name, bad, f"heads and neurons kept = max(1, ⌊alive × (1 − ratio)⌋) {how}"
                              f"{rounded}, compounding, at all {len(log.pruned)} pruning "
                              f"step(s)")


def steps_in_force(log: RunLog) -> Optional[Check]:
    """Refill: the next state starts at the step's sparsity; RSST: it ends with the cut."""
    name = "Each pruning step is in force in the next state"
    bad, rsst = [], False
    for k, ev in sorted(log.pruned.items()):
        nxt = log.states.get(ev["state"] + 1)
        rsst = rsst or not ev["applied"]
        if nxt is None:
            continue
        if ev["applied"]:
            got = nxt.started["sparsity"] if nxt.started is not None else None
            if got is not None and ev["sparsity"] is not None and \
                    abs(got - ev["sparsity"]) > TOLERANCE:
                bad.append(f"state {nxt.state} started at {pct(got)}, step {k} cut to "
                           f"{pct(ev['sparsity'])}")
        elif nxt.ended is not None and nxt.hard_cut is None:
            bad.append(f"state {nxt.state} ended without the hard cut of step {k}")
        elif nxt.hard_cut is not None and nxt.hard_cut["sparsity"] is not None and \
                ev["sparsity"] is not None and \
                abs(nxt.hard_cut["sparsity"] - ev["sparsity"]) > TOLERANCE:
            bad.append(f"hard cut of state {nxt.state} reached "
                       f"{pct(nxt.hard_cut['sparsity'])}, target {pct(ev['sparsity'])}")
    if not log.pruned:
        return None
    return verdict(name, bad, "the next state ends with the hard cut to the step's target "
                              "sparsity" if rsst else "the next state starts at the step's "
                              "sparsity")


def cut_differences(cut: dict, target: dict) -> List[str]:
    """How a hard cut's structure differs from its target's: heads and neurons, per block."""
    out = []
    for what, key in (("heads", "heads_kept"), ("neurons", "neurons_kept")):
        got = [layer[key] for layer in cut["layers"] or ()]
        want = [layer[key] for layer in target["layers"] or ()]
        if got != want:
            out.append(f"{what} kept per block {got} ≠ target {want}")
        elif cut[key] != target[key]:
            out.append(f"{what} kept {cut[key]} ≠ target {target[key]}")
    return out


def cuts_equal_targets(log: RunLog) -> Optional[Check]:
    """Every RSST hard cut applied exactly the structure its pruning step chose."""
    name = "Each hard cut equals its target"
    cuts = [(s, st.hard_cut) for s, st in sorted(log.states.items()) if st.hard_cut]
    if not cuts:
        return None
    bad = []
    for s, cut in cuts:
        target = log.pruned.get(s - 1)
        if target is None:
            bad.append(f"state {s}: hard cut without the pruning step {s - 1} in the log")
            continue
        bad += [f"state {s}: {d}" for d in cut_differences(cut, target)]
    return verdict(name, bad, f"heads and neurons kept per block equal the target at all "
                              f"{len(cuts)} hard cut(s)")


def _missing_epochs(log: RunLog) -> List[str]:
    out = []
    for s, st in sorted(log.states.items()):
        if st.ended is not None:
            lost = missing_epochs(log, s)
            if lost:
                out.append(f"state {s} lacks epoch(s) {', '.join(map(str, lost[:10]))}")
    return out


def no_gaps(log: RunLog) -> Check:
    """Every summary event exactly once, states consecutive, seq continuous."""
    name = "No crash or resume gaps"
    if not log.states:
        return Check(SKIP, name, "no state in the log")
    gaps = _missing_epochs(log)
    gaps += [f"{key[0]} {', '.join(map(str, key[1:]))} logged again" for key in log.duplicates]
    known = sorted(log.states)
    if known != list(range(known[0], known[-1] + 1)):
        gaps.append(f"states {known[:10]} are not consecutive")
    gaps += [f"seq {a} → {b}" for a, b in log.seq_gaps]
    if log.seq_backward:
        gaps.append(f"seq goes backward {log.seq_backward}× (two writers?)")
    resumes = f"; resumed {log.resumed.count}× without a gap" if log.resumed else ""
    return verdict(name, gaps, f"every epoch of every finished state logged exactly once, seq "
                               f"continuous{resumes}")


def log_checks(log: RunLog) -> List[Check]:
    """Every log-only row that applies to this log."""
    rows = (whole_structures_in_log(log), sparsity_equals_target(log), steps_in_force(log),
            cuts_equal_targets(log), no_gaps(log))
    return [row for row in rows if row is not None]


def steps_at(log: RunLog, state: int) -> int:
    """How many pruning steps the weights of ``state`` hold by the schedule (not the log):
    ``state`` steps, plus the ``prune_last`` step at the end of the last state."""
    last = log.states_total is not None and state == log.states_total - 1
    return state + (1 if last and config_value(log, "prune", "prune_last") is True else 0)
