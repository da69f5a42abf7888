"""Report sections about pruning: every step's per-layer table, RSST hard cuts and λ, the
verification table and the export results (Markdown, torch-free)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from engine.runlog import RunLog
from tuiprune import format as fmt
from tuiprune.exportdoc import latency_rows, section
from tuiprune.report.checks import MARK, Check, cut_differences
from tuiprune.report.mdtext import bullets, heading, table, text

BAR_CELLS = 10
MAX_HEAD_CELLS = 16   # up to this many heads, the attention bar has one cell per head


def upper(value: Any) -> str:
    return text(value.upper() if isinstance(value, str) else value)


def _extremes(layers: Sequence[dict], key: str) -> Tuple[Optional[dict], Optional[dict]]:
    if not layers:
        return None, None
    most = max(layers, key=lambda layer: (layer[key], -layer["block"]))
    least = min(layers, key=lambda layer: (layer[key], layer["block"]))
    return most, least


def _layer_table(layers: Sequence[dict]) -> List[str]:
    rows = []
    for layer in layers:
        heads = layer["heads_total"]
        cells = heads if 0 < heads <= MAX_HEAD_CELLS else BAR_CELLS
        rows.append([str(layer["block"]), fmt.number(layer["attn_sparsity"]),
                     fmt.bar(layer["attn_sparsity"] / 100, cells),
                     fmt.ratio(layer["heads_kept"], heads), fmt.number(layer["mlp_sparsity"]),
                     fmt.bar(layer["mlp_sparsity"] / 100, BAR_CELLS),
                     fmt.ratio(layer["neurons_kept"], layer["neurons_total"])])
    return table(["Layer", "Attn sparsity %", "Pruned", "Heads kept", "MLP sparsity %",
                  "Pruned", "Neurons kept"], rows, align="lrlrrlr")


def _structure_summary(ev: dict) -> List[str]:
    sp = ev["sparsity"]
    out = [f"Overall sparsity **{fmt.pct(sp)}** ({fmt.count(ev['zeros'])} of "
           f"{fmt.count(ev['total'])} prunable weights are zero) · remaining "
           f"{fmt.pct(None if sp is None else 100 - sp)}",
           f"Heads kept **{fmt.ratio(ev['heads_kept'], ev['heads_total'])}** · MLP neurons "
           f"kept **{fmt.ratio(ev['neurons_kept'], ev['neurons_total'])}**"]
    layers = ev["layers"] or []
    for label, key in (("Attention", "attn_sparsity"), ("MLP", "mlp_sparsity")):
        most, least = _extremes(layers, key)
        if most is None:
            continue
        if most[key] == least[key]:
            out.append(f"{label}: every layer {fmt.pct(most[key])}")
            continue
        kept = (f", {fmt.ratio(most['heads_kept'], most['heads_total'])} heads kept"
                if key == "attn_sparsity" else "")
        out.append(f"{label}: most pruned layer {most['block']} ({fmt.pct(most[key])}{kept}), "
                   f"least pruned layer {least['block']} ({fmt.pct(least[key])})")
    return bullets(out)


def _step(k: int, ev: dict) -> List[str]:
    s = ev["state"]
    how = (f"applied from state {s + 1}" if ev["applied"] else
           f"target that state {s + 1} squeezes toward and cuts at its end")
    return heading(2, f"Pruning step {k} (after state {s})") + [
        f"{upper(ev['method'])} · {text(ev['sorting'])} ranking · criterion "
        f"{text(ev['criterion'])} · head ratio {fmt.fraction_pct(ev['head_ratio'])} · MLP "
        f"ratio {fmt.fraction_pct(ev['mlp_ratio'])} · element-wise step "
        f"{fmt.fraction_pct(ev['rate'])} → {fmt.pct(ev['elementwise_sparsity'])} sparse · "
        f"{how} · took {fmt.duration(ev['seconds'])}", ""]


def pruning_steps(log: RunLog) -> List[str]:
    out = []
    for k, ev in sorted(log.pruned.items()):
        out += _step(k, ev) + _structure_summary(ev) + [""]
        out += _layer_table(ev["layers"] or []) + [""]
        cut = log.states.get(ev["state"] + 1)
        if cut is not None and cut.hard_cut is not None:
            out += _hard_cut(cut.hard_cut, ev)
    return out


def _hard_cut(cut: dict, target: dict) -> List[str]:
    before, after = cut["val_acc_before"], cut["val_acc_after"]
    cost = (f" ({fmt.signed(after - before)} points)"
            if before is not None and after is not None else "")
    differences = cut_differences(cut, target)
    return heading(3, f"Hard cut at the end of state {cut['state']}") + bullets([
        f"Sparsity after the cut **{fmt.pct(cut['sparsity'])}** ({fmt.count(cut['zeros'])} of "
        f"{fmt.count(cut['total'])}) · heads kept {fmt.ratio(cut['heads_kept'], cut['heads_total'])}"
        f" · neurons kept {fmt.ratio(cut['neurons_kept'], cut['neurons_total'])}",
        f"Val acc before → after the cut: {fmt.pct(before)} → {fmt.pct(after)}{cost}",
        f"L2 norm removed by the cut (near 0 when the squeeze worked): "
        f"{fmt.sci(cut['residual_norm'])}",
        "The cut structure (heads and neurons per block) " +
        ("equals the target of the pruning step" if not differences else
         "**differs from** the target of the pruning step: " + "; ".join(differences))]) + [""]


def lambda_section(log: RunLog) -> List[str]:
    rows = []
    for s, st in sorted(log.states.items()):
        lam = st.lam
        if lam.events == 0:
            continue
        last = lam.last
        rows.append([str(s), fmt.sci(lam.first["value"]), fmt.sci(last["value"]),
                     fmt.count(lam.updates), str(lam.ramps), fmt.count(lam.events),
                     f"{fmt.count(last['regularized'])} / {fmt.count(last['heads'])} / "
                     f"{fmt.count(last['neurons'])}"])
    if not rows:
        if log.method == "rsst":
            return heading(2, "RSST λ") + ["_No `lambda` events in the log._", ""]
        return []
    return heading(2, "RSST λ") + table(
        ["State", "λ first logged", "λ last", "Updates", "Ramps", "Events logged",
         "Squeezed weights / heads / neurons"], rows) + [
        "", "Updates: optimizer steps that updated λ (from the `step` counter, summed over ramp "
        "restarts); `lambda` events are throttled, so fewer are logged.", ""]


def verification(checks: Sequence[Check]) -> List[str]:
    rows = [[MARK[c.status], c.name, c.detail] for c in checks]
    return heading(2, "Verification") + table(["", "Check", "Detail"], rows, align="lll") + [""]


def _ratio_cell(part: Dict[str, Any]) -> str:
    r = fmt.number(part.get("ratio"))
    return r if r == fmt.NO_VALUE else r + "×"


def _export_doc(where: str, doc: Dict[str, Any]) -> List[str]:
    s = section(doc, "structure")
    diff = section(doc, "equivalence").get("max_abs_diff")
    out = [f"{text(where)} — state {text(doc.get('state'))} ({text(doc.get('checkpoint'))}) · "
           f"heads {fmt.ratio(s.get('heads_kept'), s.get('heads_total'))} · neurons "
           f"{fmt.ratio(s.get('neurons_kept'), s.get('neurons_total'))} · max |Δ output| "
           f"{fmt.sci(diff)}", ""]
    rows = []
    for label, key in (("Parameters", "params"), ("MACs per image", "macs")):
        part = section(doc, key)
        rows.append([label, fmt.count(part.get("before")), fmt.count(part.get("after")),
                     _ratio_cell(part)])
    rows += [[a, b, c, d + "×"] for a, b, c, d in latency_rows(doc.get("latency"))]
    return out + table(["", "Before (masked)", "After (compacted)", "Ratio"], rows) + [""]


def export_section(exports: Sequence[Tuple[str, Dict[str, Any]]]) -> List[str]:
    if not exports:
        return []
    out = heading(2, "Export (compacted model)")
    for where, doc in exports:
        out += _export_doc(where, doc)
    return out
