"""The building blocks the run loop calls between pruning states (docs/algorithm.md, "A run").

Refill: ``prune_step`` on the trained weights → ``begin_refill_state`` (cut, then rewind).
RSST:   ``prune_step`` → ``begin_rsst_state`` (rewind, squeeze toward the target) → at the end
        of that state ``hard_cut``.
Scores always come from the trained weights of the state just finished: ``prune_step`` runs
before any rewind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable, Optional

import torch
from torch import nn

from engine.pruning import (Masks, SparsityReport, apply_masks, check_masks, current_masks,
                            elementwise_masks, sparsity_report, structured_masks)
from engine.rewind import RewindTarget
from engine.structure import vit_structure


@dataclass
class PruneStep:
    """Result of one pruning step: the element-wise mask, the structured mask, its report."""

    m_e: Masks
    m_s: Masks
    report: SparsityReport
    elementwise_sparsity: float
    seconds: float


def prune_step(model: nn.Module, *, rate: float, head_ratio: float, mlp_ratio: float,
               sorting: str = "global", criterion: str = "magnitude",
               calib: Optional[Iterable] = None, round_to: int = 1) -> PruneStep:
    """Element-wise step then structured step on the model's current (trained) weights,
    starting from the masks already in force (``round_to``: see ``structured_masks``). The
    model is not modified."""
    start = time.perf_counter()
    m_e = elementwise_masks(model, rate, masks=current_masks(model))
    m_s = structured_masks(model, m_e, head_ratio=head_ratio, mlp_ratio=mlp_ratio,
                           sorting=sorting, criterion=criterion, calib=calib,
                           round_to=round_to)
    report = sparsity_report(model, m_s)
    e_sparsity = sparsity_report(model, m_e).sparsity
    return PruneStep(m_e, m_s, report, e_sparsity, time.perf_counter() - start)


def begin_refill_state(model: nn.Module, m_s: Masks,
                       rewind: Optional[RewindTarget]) -> None:
    """Refill: cut to ``m_s`` (pruned weights exactly 0 from now on), rewind the survivors."""
    apply_masks(model, m_s)
    if rewind is not None:
        rewind.restore(model)


def begin_rsst_state(model: nn.Module, m_s: Masks,
                     rewind: Optional[RewindTarget]) -> Masks:
    """RSST: rewind (the current hard mask stays, nothing is cut) and return ``m_s`` as the
    pending target. The state that follows squeezes toward it with an
    :class:`engine.rsst.RSSTRegularizer` built when it begins training, so that a resume in
    the middle of the state rebuilds the same regulariser at the same ramp position."""
    if rewind is not None:
        rewind.restore(model)
    return m_s


@torch.no_grad()
def hard_cut(model: nn.Module, m_s: Masks) -> float:
    """Apply the RSST target as a hard mask; return the L2 norm of the weights it removed
    (close to 0 when the squeeze worked)."""
    struct = vit_structure(model)
    m_s = check_masks(struct, m_s, "m_s")
    linears = struct.linears()
    removed = sum(float((linears[name].weight * (mask == 0)).pow(2).sum())
                  for name, mask in m_s.items())
    apply_masks(model, m_s)
    return removed ** 0.5
