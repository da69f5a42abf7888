"""Choosing what to prune: the element-wise step and the structured (head / neuron) step
(docs/algorithm.md, "One pruning step").

    m_e = elementwise_masks(model, rate=0.3, masks=current)          # global L1 on alive weights
    m_s = structured_masks(model, m_e, head_ratio=0.3, mlp_ratio=0.3,
                           sorting="global", criterion="magnitude")  # whole heads / neurons

Every function accepts masks of any dtype (nonzero = keep) and any subset of the prunable
layers (a missing layer = nothing pruned there). ``structured_masks`` returns float *broadcast
views* (built from one keep flag per row/column, so making them costs no memory traffic); they
read and compute like ordinary tensors — call ``.clone()`` before writing into one in place.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, Iterable, List, Optional, Tuple

import torch
from torch import nn

from engine.keep import head_multiple, keep_count, round_kept
from engine.pruning.criteria import ScoringInput, get_criterion
from engine.pruning.masks import Masks, check_masks, mask_counts
from engine.structure import BlockStructure, VitStructure, vit_structure

SORTINGS = ("global", "layer-wise")


# --------------------------------------------------------------------------- validation
def check_ratio(value, name: str) -> float:
    """A pruning fraction in [0, 1) or a ``TypeError``/``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in [0, 1), got {type(value).__name__} "
                        f"{value!r}")
    value = float(value)
    if not (0.0 <= value < 1.0) or math.isnan(value):
        raise ValueError(f"{name} must be in [0, 1) (a fraction to prune), got {value}")
    return value


def check_count(value, name: str) -> int:
    """A count (of steps, a rounding multiple) as an int >= 1, or a ``TypeError``/
    ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a whole number >= 1, got {type(value).__name__} "
                        f"{value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def check_choice(value, name: str, choices: Tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, else a ``ValueError`` listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; "
                         f"got {value!r}")
    return value


# --------------------------------------------------------------------------- element-wise
@torch.no_grad()
def elementwise_masks(model: nn.Module, rate: float, masks: Optional[Masks] = None) -> Masks:
    """Global L1 magnitude pruning over all prunable weights.

    Removes ``int(rate * alive)`` of the weights still alive under ``masks`` (already-pruned
    weights stay pruned), smallest ``|w|`` first; ties at the threshold go to the earlier
    weight in layer order. Returns a dense mask (weight dtype) for every prunable layer.
    Raises ``ValueError`` when an alive weight is NaN or infinite.
    """
    struct = vit_structure(model)
    rate = check_ratio(rate, "rate")
    prev = check_masks(struct, masks, "masks")
    linears = struct.linears()
    scores = []
    for name, lin in linears.items():
        a = lin.weight.detach().abs().flatten().float()
        if name in prev:
            a = torch.where(prev[name].flatten().to(a.device) != 0, a, torch.full_like(a, -1.0))
        scores.append(a)
    flat = torch.cat(scores)
    if not torch.isfinite(flat).all():
        bad = [n for n, s in zip(linears, scores) if not torch.isfinite(s).all()]
        raise ValueError(f"model: the weights of {', '.join(bad)} hold NaN or inf values (the "
                         f"training diverged?); prune a model with finite weights")
    dead = int((flat < 0).sum())
    k = int(rate * (flat.numel() - dead))  # weights to remove now
    prune = flat < 0
    if k > 0:
        n = dead + k
        thr = torch.kthvalue(flat.cpu() if flat.device.type == "mps" else flat, n).values
        prune = flat < thr
        need = n - int(prune.sum())
        if need > 0:  # ties at the threshold: earliest first
            ties = (flat == thr).nonzero().flatten()[:need]
            prune[ties] = True
    out, offset = {}, 0
    for name, lin in linears.items():
        w = lin.weight
        out[name] = (~prune[offset:offset + w.numel()]).view_as(w).to(w.dtype)
        offset += w.numel()
    return out


# --------------------------------------------------------------------------- structured
def structured_masks(model: nn.Module, m_e: Optional[Masks], head_ratio: float = 0.3,
                     mlp_ratio: float = 0.3, sorting: str = "global",
                     criterion="magnitude", calib: Optional[Iterable] = None,
                     loss_fn: Optional[Callable] = None, round_to: int = 1) -> Masks:
    """Score every head and neuron, keep the best, return a whole-structure mask.

    ``head_ratio``/``mlp_ratio`` are the fractions of the *alive* heads/neurons to prune in
    this step (at the first step: of all of them). Structures already pruned — every weight of
    the structure removed in ``m_e`` — stay pruned and do not count. ``sorting="global"``
    ranks all blocks together and keeps ``max(1, int(alive * (1 - ratio)))``; ``"layer-wise"``
    does the same per block. Ties are stable: the earlier block, then the lower index, wins.

    ``criterion``: a name from ``CRITERIA`` or a ``Criterion`` instance. ``remain`` (incoming
    weights alive in ``m_e``: a head's qkv rows, a neuron's fc1 row), ``magnitude`` (sum |w|
    of the same rows in the current weights), ``l1``/``l2`` (mean |·| / RMS of its qkv
    features / fc1 outputs over ``calib``), ``saliency`` (|Σ w·∂L/∂w| over all its weights on
    ``calib``). Activation criteria run in eval mode on the current weights with ``m_e``
    applied, without modifying the model; ``calib`` is an iterable of ``(images, labels)``
    batches as the model expects them (normalised), and ``loss_fn`` defaults to cross-entropy.

    ``round_to`` (Torch-Pruning's): each block keeps a multiple of ``round_to`` neurons, and a
    number of heads whose width is a multiple of it, rounded down from what the ratio keeps
    (a block below one multiple keeps its count; ``engine.keep``): the lowest-ranked kept
    structures of the block go.
    """
    struct = vit_structure(model)
    head_ratio = check_ratio(head_ratio, "head_ratio")
    mlp_ratio = check_ratio(mlp_ratio, "mlp_ratio")
    check_choice(sorting, "sorting", SORTINGS)
    scorer = get_criterion(criterion)
    m_e = check_masks(struct, m_e, "m_e")
    if scorer.needs_calib and calib is None:
        raise ValueError(f"criterion {scorer.name!r} measures activations and needs `calib`, an "
                         f"iterable of (images, labels) batches; or use 'magnitude'/'remain'")


    round_to = check_count(round_to, "round_to")
    heads, neurons = scorer(ScoringInput(model, struct, m_e, calib, loss_fn))
    alive_heads, alive_neurons = alive_structures(struct, m_e)
    per_head = max(head_multiple(round_to, b.head_dim) for b in struct)
    keep_heads = select_structures(heads, alive_heads, head_ratio, sorting, per_head)
    keep_neurons = select_structures(neurons, alive_neurons, mlp_ratio, sorting, round_to)
    masks: Masks = {}
    for b, kh, kn in zip(struct, keep_heads, keep_neurons):
        masks.update(block_masks(b, kh, kn))
    return masks


def alive_structures(struct: VitStructure, m_e: Masks
                     ) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """Per block, bool flags of the heads / neurons with at least one weight alive in ``m_e``
    (no mask = all alive)."""
    heads, neurons = mask_counts(struct, m_e)
    return [c > 0 for c in heads], [c > 0 for c in neurons]


def select_structures(scores: List[torch.Tensor], alive: List[torch.Tensor], ratio: float,
                      sorting: str, multiple: int = 1) -> List[torch.Tensor]:
    """Keep flags per block: the ``max(1, int(alive * (1 - ratio)))`` best alive structures,
    ranked globally or within each block; stable ties. Then each block's count is rounded
    down to a ``multiple`` (``engine.keep.round_kept``), dropping its lowest-ranked."""
    for s in scores:
        if not torch.isfinite(s).all():
            raise ValueError("the pruning criterion produced non-finite scores (NaN/inf): the "
                             "weights or the calibration loss are not finite")
    groups = [(scores, alive)] if sorting == "global" else [([s], [a]) for s, a in
                                                            zip(scores, alive)]
    keep = []
    for group_scores, group_alive in groups:
        s = torch.cat([x.double().cpu() for x in group_scores])
        a = torch.cat([x.cpu() for x in group_alive])
        k = keep_count(int(a.sum()), ratio)
        key = torch.where(a, s, torch.full_like(s, -math.inf))
        order = torch.sort(key, descending=True, stable=True).indices
        flags = torch.zeros_like(a)
        flags[order[:k]] = True
        keep.extend(flags.split([x.numel() for x in group_scores]))
    if multiple > 1:
        keep = [_round_block(flags, block_scores.double().cpu(), multiple)
                for flags, block_scores in zip(keep, scores)]
    return keep


def _round_block(flags: torch.Tensor, scores: torch.Tensor, multiple: int) -> torch.Tensor:
    """``flags`` with only the best ``round_kept(kept, multiple)`` kept (stable ties: the lower
    index stays)."""
    kept = int(flags.sum())
    k = round_kept(kept, multiple)
    if k == kept:
        return flags
    key = torch.where(flags, scores, torch.full_like(scores, -math.inf))
    out = torch.zeros_like(flags)
    out[torch.sort(key, descending=True, stable=True).indices[:k]] = True
    return out


def block_masks(b: BlockStructure, keep_heads: torch.Tensor,
                keep_neurons: torch.Tensor) -> Masks:
    """Per-head / per-neuron keep flags of one block as weight-shaped (broadcast view)
    masks."""
    dt, dev = b.qkv.weight.dtype, b.qkv.weight.device
    kh = keep_heads.to(device=dev, dtype=dt)
    kn = keep_neurons.to(device=dev, dtype=dt)
    qkv_rows = kh.view(1, -1, 1).expand(3, b.num_heads, b.head_dim).reshape(-1)
    proj_cols = kh.repeat_interleave(b.head_dim)
    return {
        f"{b.prefix}.attn.qkv": qkv_rows.view(-1, 1).expand(b.qkv.weight.shape),
        f"{b.prefix}.attn.proj": proj_cols.view(1, -1).expand(b.proj.weight.shape),
        f"{b.prefix}.mlp.fc1": kn.view(-1, 1).expand(b.fc1.weight.shape),
        f"{b.prefix}.mlp.fc2": kn.view(1, -1).expand(b.fc2.weight.shape),
    }
