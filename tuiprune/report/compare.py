"""``tuiprune report A --compare B``: a second run set beside the first (e.g. global vs
layer-wise ranking): settings, accuracy and sparsity per state, and how evenly each pruning
step spread its sparsity over the layers (Markdown, torch-free)."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any, List, Sequence

from tuiprune import format as fmt
from tuiprune.report.mdtext import heading, table, text

if TYPE_CHECKING:  # pragma: no cover
    from tuiprune.report.log import LoggedRun

SETTINGS = ("method", "sorting", "criterion", "head_ratio", "mlp_ratio", "states", "epochs")


def spread(layers: Sequence[dict], key: str) -> str:
    """``lowest … highest % (σ standard deviation)`` of a per-layer sparsity."""
    values = [layer[key] for layer in layers]
    if not values:
        return fmt.NO_VALUE
    sd = statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{fmt.number(min(values))} … {fmt.number(max(values))} % (σ {fmt.number(sd)})"


def _setting(key: str, value: Any) -> str:
    return fmt.ratios(value) if key.endswith("ratio") else text(value)


def _settings(a: "LoggedRun", b: "LoggedRun") -> List[str]:
    sa, sb = a.log.started or {}, b.log.started or {}
    rows = []
    for key in SETTINGS:
        va, vb = sa.get(key), sb.get(key)
        rows.append([key, _setting(key, va), _setting(key, vb), "" if va == vb else "≠"])
    return table(["Setting", "A", "B", ""], rows, align="llll") + [""]


def _ended(run: "LoggedRun", s: int) -> dict:
    st = run.log.states.get(s)
    return st.ended if st is not None and st.ended is not None else {}


def _per_state(a: "LoggedRun", b: "LoggedRun") -> List[str]:
    rows = []
    for s in sorted(set(a.log.states) | set(b.log.states)):
        ea, eb = _ended(a, s), _ended(b, s)
        ba, bb = ea.get("best_val_acc"), eb.get("best_val_acc")
        diff = fmt.signed(ba - bb) if ba is not None and bb is not None else fmt.NO_VALUE
        rows.append([str(s), fmt.number(ba), fmt.number(bb), diff,
                     fmt.number(ea.get("sparsity")), fmt.number(eb.get("sparsity")),
                     fmt.number(ea.get("test_acc")), fmt.number(eb.get("test_acc"))])
    return heading(3, "Accuracy and sparsity per state") + table(
        ["State", "A best val acc %", "B best val acc %", "A − B", "A sparsity %",
         "B sparsity %", "A test acc %", "B test acc %"], rows) + [""]


def _spreads(a: "LoggedRun", b: "LoggedRun") -> List[str]:
    rows = []
    for k in sorted(set(a.log.pruned) | set(b.log.pruned)):
        pa, pb = a.log.pruned.get(k), b.log.pruned.get(k)
        la, lb = (pa["layers"] or []) if pa else [], (pb["layers"] or []) if pb else []
        rows.append([str(k), spread(la, "attn_sparsity"), spread(lb, "attn_sparsity"),
                     spread(la, "mlp_sparsity"), spread(lb, "mlp_sparsity"),
                     fmt.number(pa["sparsity"] if pa else None),
                     fmt.number(pb["sparsity"] if pb else None)])
    return heading(3, "Spread of per-layer sparsity per pruning step") + table(
        ["Step", "A attention", "B attention", "A MLP", "B MLP", "A overall %",
         "B overall %"], rows) + [
        "", "Per-layer sparsity: lowest … highest layer (σ = standard deviation over layers); "
        "a global ranking spreads it, a layer-wise one keeps it even.", ""]


def _last_common_step(a: "LoggedRun", b: "LoggedRun") -> List[str]:
    common = sorted(set(a.log.pruned) & set(b.log.pruned))
    if not common:
        return []
    k = common[-1]
    la = {layer["block"]: layer for layer in a.log.pruned[k]["layers"] or ()}
    lb = {layer["block"]: layer for layer in b.log.pruned[k]["layers"] or ()}
    rows = []
    for blk in sorted(set(la) | set(lb)):
        x, y = la.get(blk, {}), lb.get(blk, {})
        xa, ya = x.get("attn_sparsity"), y.get("attn_sparsity")
        rows.append([str(blk), fmt.number(xa), fmt.bar(None if xa is None else xa / 100, 10),
                     fmt.number(ya), fmt.bar(None if ya is None else ya / 100, 10),
                     fmt.number(x.get("mlp_sparsity")), fmt.number(y.get("mlp_sparsity"))])
    return heading(3, f"Per layer at pruning step {k}") + table(
        ["Layer", "A attn %", "A", "B attn %", "B", "A MLP %", "B MLP %"], rows,
        align="lrlrlrr") + [""]


def comparison(a: "LoggedRun", b: "LoggedRun") -> List[str]:
    """The comparison section of the report on ``a``."""
    out = heading(2, f"Comparison: {text(a.name)} (A) vs {text(b.name)} (B)")
    return out + _settings(a, b) + _per_state(a, b) + _spreads(a, b) + _last_common_step(a, b)
