"""The report's verification rows that read the final best checkpoint (torch, imported lazily).

The weights are counted here directly from the saved tensors (timm's layout: a head is its q,
k, v rows of ``attn.qkv`` and its columns of ``attn.proj``; a neuron its ``mlp.fc1`` row and
``mlp.fc2`` column). Nothing of the engine's pruning code is used to count, so a wrong count
in the engine cannot hide here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from engine.errors import UserError
from engine.rundir import best_checkpoints
from tuiprune.format import pct
from tuiprune.report.checks import (FAIL, PASS, SKIP, Check, multiples, planned_kept, steps_at,
                                    verdict)
from tuiprune.report.log import LoggedRun

NAMES = ("Final checkpoint: masks cut whole heads and neurons",
         "Final checkpoint: no pruned weight is non-zero",
         "Final checkpoint: structure matches the log",
         "Final checkpoint: sparsity equals the target")


@dataclass
class BlockCount:
    """What is alive in one block's saved weights (any non-zero weight keeps a structure)."""

    heads: int
    heads_total: int
    neurons: int
    neurons_total: int
    zeros: int          # zero entries of qkv, proj, fc1 and fc2
    total: int
    head_weights: int   # weights of one head (qkv rows + proj columns)
    neuron_weights: int


@dataclass
class Saved:
    """The final best checkpoint, loaded."""

    rel: str                    # path relative to the run directory
    state: int                  # N of state<N>_best.pt
    state_dict: Dict[str, Any]  # the saved tensors, as written
    masks: Optional[Dict[str, Any]]
    heads: List[int]            # heads per block of the model


def units(tensors: Dict[str, Any], block: int, heads: int) -> Tuple[list, list]:
    """One block's weights (or masks) per structure: ``([qkv, proj], [fc1, fc2])``, each
    shaped (structures, entries); a tensor missing from ``tensors`` is left out."""
    p = f"blocks.{block}."
    head_parts, neuron_parts = [], []
    qkv, proj = tensors.get(p + "attn.qkv.weight"), tensors.get(p + "attn.proj.weight")
    if qkv is not None:
        head_parts.append(qkv.reshape(3, heads, -1, qkv.shape[1]).transpose(0, 1)
                          .reshape(heads, -1))
    if proj is not None:
        head_parts.append(proj.reshape(proj.shape[0], heads, -1).transpose(0, 1)
                          .reshape(heads, -1))
    fc1, fc2 = tensors.get(p + "mlp.fc1.weight"), tensors.get(p + "mlp.fc2.weight")
    if fc1 is not None:
        neuron_parts.append(fc1)
    if fc2 is not None:
        neuron_parts.append(fc2.t())
    return head_parts, neuron_parts


def count_alive(saved: Saved) -> List[BlockCount]:
    """Per block: heads and neurons with any non-zero weight, and the zero weights."""
    out = []
    for b, heads in enumerate(saved.heads):
        head_parts, neuron_parts = units(saved.state_dict, b, heads)
        h_alive = sum(part.ne(0).any(dim=1) for part in head_parts)
        n_alive = sum(part.ne(0).any(dim=1) for part in neuron_parts)
        parts = head_parts + neuron_parts
        out.append(BlockCount(
            heads=int(h_alive.ne(0).sum()), heads_total=heads,
            neurons=int(n_alive.ne(0).sum()), neurons_total=neuron_parts[0].shape[0],
            zeros=sum(int(part.eq(0).sum()) for part in parts),
            total=sum(part.numel() for part in parts),
            head_weights=sum(part.shape[1] for part in head_parts),
            neuron_weights=sum(part.shape[1] for part in neuron_parts)))
    return out


def load_final(run: LoggedRun) -> "Saved | List[Check]":
    """The final best checkpoint, or the rows to show when it cannot be checked."""
    found = best_checkpoints(run.run_dir)
    if not found:
        return [Check(SKIP, n, "no checkpoints/state<N>_best.pt in the run directory")
                for n in NAMES]
    try:
        import torch  # noqa: F401
    except ImportError:
        return [Check(SKIP, n, "torch is not installed here") for n in NAMES]
    from engine.checkpoint import load_model

    state = max(found)
    rel = str(found[state].relative_to(run.run_dir))
    try:
        model, masks, ckpt = load_model(found[state])
    except (UserError, ValueError, TypeError, RuntimeError, KeyError) as exc:
        return [Check(FAIL, NAMES[0], f"{rel} cannot be loaded: {exc}")] + [
            Check(SKIP, n, "checkpoint not loadable") for n in NAMES[1:]]
    heads = [int(block.attn.num_heads) for block in model.blocks]
    return Saved(rel, state, ckpt["model"], masks or None, heads)


def masks_whole(saved: Saved) -> Check:
    """Every head and neuron is masked whole: all of its entries kept, or all pruned."""
    if not saved.masks:
        return Check(PASS, NAMES[0], f"{saved.rel} has no masks (nothing pruned)")
    bad = []
    as_weights = {name + ".weight": mask for name, mask in saved.masks.items()}
    for b, heads in enumerate(saved.heads):
        try:
            head_parts, neuron_parts = units(as_weights, b, heads)
        except RuntimeError as exc:
            bad.append(f"block {b}: a mask does not fit its weight ({exc})")
            continue
        for what, parts in (("head", head_parts), ("neuron", neuron_parts)):
            kept = [part.ne(0) for part in parts]
            partly = [bool(((k.any(dim=1)) & ~(k.all(dim=1))).any()) for k in kept]
            differ = len(kept) == 2 and not bool(kept[0].all(1).eq(kept[1].all(1)).all())
            if any(partly) or differ:
                bad.append(f"block {b}: a {what} is only partly masked")
    return verdict(NAMES[0], bad, f"{saved.rel}: every head and neuron of the masks is kept "
                                  f"or pruned whole")


def pruned_weights_zero(saved: Saved) -> Check:
    """Every weight the masks prune is exactly 0 in the saved tensors."""
    nonzero = 0
    for name, mask in (saved.masks or {}).items():
        w = saved.state_dict.get(name + ".weight")
        if w is not None and tuple(w.shape) == tuple(mask.shape):
            nonzero += int(w[mask == 0].ne(0).sum())
    if nonzero:
        return Check(FAIL, NAMES[1], f"{nonzero:,} pruned weights are non-zero in {saved.rel}")
    return Check(PASS, NAMES[1], f"all weights the masks prune are exactly 0 in {saved.rel}")


def structure_matches_log(run: LoggedRun, saved: Saved, counts: List[BlockCount]) -> Check:
    """What is alive per block equals the structure the log says is in force."""
    log = run.log
    ev = log.structure_in_force(saved.state)
    zeros, total = sum(c.zeros for c in counts), sum(c.total for c in counts)
    bad = []
    if ev is None:
        bad += [f"block {b}: {c.heads}/{c.heads_total} heads, {c.neurons}/{c.neurons_total} "
                f"neurons alive, the log has no pruning step in force"
                for b, c in enumerate(counts)
                if (c.heads, c.neurons) != (c.heads_total, c.neurons_total)]
        what = f"dense, as the log says for state {saved.state}"
    else:
        for what, key, got in (("heads", "heads_kept", [c.heads for c in counts]),
                               ("neurons", "neurons_kept", [c.neurons for c in counts])):
            logged = [layer[key] for layer in ev["layers"] or ()]
            if logged != got:
                bad.append(f"{what} alive per block {got} ≠ log {logged}")
        if ev["zeros"] is not None and ev["zeros"] != zeros:
            bad.append(f"{zeros:,} zero weights ≠ log {ev['zeros']:,}")
        kind = "pruning step " + str(ev["step"]) if ev["event"] == "pruned" else \
            f"hard cut of state {ev['state']}"
        what = f"per-block heads and neurons and the zero count equal the log's {kind}"
    return verdict(NAMES[2], bad, f"state {saved.state}: {zeros:,} of {total:,} prunable "
                                  f"weights zero ({pct(100 * zeros / max(total, 1))}); {what}")


def _expected_zeros(counts: List[BlockCount], heads: List[int], neurons: List[int]) -> \
        Optional[int]:
    """Zero weights of the planned structure: whole pruned heads and neurons (per block, or
    over all blocks when every block's heads and neurons are the same size)."""
    if len(heads) == len(counts):
        return sum((c.heads_total - h) * c.head_weights + (c.neurons_total - n) * c.neuron_weights
                   for c, h, n in zip(counts, heads, neurons))
    if len({(c.head_weights, c.neuron_weights) for c in counts}) != 1:
        return None
    c = counts[0]
    return ((sum(x.heads_total for x in counts) - heads[0]) * c.head_weights
            + (sum(x.neurons_total for x in counts) - neurons[0]) * c.neuron_weights)


def sparsity_in_weights(run: LoggedRun, saved: Saved, counts: List[BlockCount]) -> Check:
    """What is alive in the saved weights equals the configured ratios' arithmetic."""
    log = run.log
    st = log.started
    sorting = st["sorting"] if st is not None else None
    if st is None or st["head_ratio"] is None or st["mlp_ratio"] is None or \
            sorting not in ("global", "layer-wise"):
        return Check(SKIP, NAMES[3], "the log has no run_started with ratios and ranking")
    n = steps_at(log, saved.state)
    if n > min(len(st["head_ratio"]), len(st["mlp_ratio"])):
        return Check(FAIL, NAMES[3], f"state {saved.state} holds {n} pruning step(s), the "
                                     f"configuration has fewer ratios")
    m_heads, m_neurons = multiples(log)
    rounded_global = sorting == "global" and max(m_heads, m_neurons) > 1
    want_h = ([[c.heads_total for c in counts]] + planned_kept(
        [c.heads_total for c in counts], st["head_ratio"][:n], sorting, m_heads))[n]
    want_n = ([[c.neurons_total for c in counts]] + planned_kept(
        [c.neurons_total for c in counts], st["mlp_ratio"][:n], sorting, m_neurons))[n]
    got_h, got_n = [c.heads for c in counts], [c.neurons for c in counts]
    if len(want_h) == 1:
        got_h, got_n = [sum(got_h)], [sum(got_n)]
    if rounded_global:  # round_to under a global ranking: each block rounds down, so the
        # totals are bounded by the ratios' counts (at the first step; later ones compound
        # on what the rounding left) and every block keeps a multiple
        bad = [f"{what} alive in block {i}: {k}, not a multiple of {m}"
               for i, c in enumerate(counts) for what, k, m in (("heads", c.heads, m_heads),
                                                                ("neurons", c.neurons,
                                                                 m_neurons))
               if k >= m and k % m]
        if n == 1:
            bad += [f"{what} alive {got[0]} > target {want[0]}" for what, got, want in
                    (("heads", got_h, want_h), ("neurons", got_n, want_n))
                    if got[0] > want[0]]
    else:
        bad = [f"{what} alive {got} ≠ target {want}" for what, got, want in
               (("heads", got_h, want_h), ("neurons", got_n, want_n)) if got != want]
    zeros, total = sum(c.zeros for c in counts), sum(c.total for c in counts)
    expected = None if rounded_global else _expected_zeros(counts, want_h, want_n)
    if expected is not None and expected != zeros:
        bad.append(f"{zeros:,} zero weights ({pct(100 * zeros / total)}) ≠ target "
                   f"{expected:,} ({pct(100 * expected / total)})")
    last = n > saved.state
    return verdict(NAMES[3], bad, f"state {saved.state}: {n} step(s)"
                                  f"{' (the last: prune_last)' if last else ''} of "
                                  f"{sorting} ratios → {sum(got_h)} heads, {sum(got_n):,} "
                                  f"neurons alive, sparsity {pct(100 * zeros / total)}")


def weight_checks(run: LoggedRun) -> List[Check]:
    """The four checkpoint rows (skipped with the reason when they cannot run)."""
    saved = load_final(run)
    if isinstance(saved, list):
        return saved
    try:
        counts = count_alive(saved)
    except (RuntimeError, ValueError, IndexError, AttributeError) as exc:
        return [masks_whole(saved), pruned_weights_zero(saved)] + [
            Check(FAIL, n, f"{saved.rel}: the weights do not have the ViT layout ({exc})")
            for n in NAMES[2:]]
    return [masks_whole(saved), pruned_weights_zero(saved),
            structure_matches_log(run, saved, counts), sparsity_in_weights(run, saved, counts)]
