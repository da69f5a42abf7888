"""Element-wise and structured (head / neuron) pruning of timm Vision Transformers.

The three steps of one pruning step (docs/algorithm.md)::

    m_e = elementwise_masks(model, rate=0.3, masks=current_masks(model))
    m_s = structured_masks(model, m_e, head_ratio=0.3, mlp_ratio=0.3,
                           sorting="global", criterion="magnitude")
    apply_masks(model, m_s)                                          # Refill: cut now

Modules: ``masks`` (mask sets, checking them, keeping them in force), ``criteria`` (the
pluggable importance scores), ``select`` (element-wise and structured selection), ``sparsity``
(the per-block report). Everything public is importable from ``engine.pruning``.
"""

from engine.pruning.criteria import (ACTIVATION_CRITERIA, CRITERIA, CRITERION_REGISTRY,
                                     ActivationNorm, Criterion, Magnitude, Remain, Saliency,
                                     ScoringInput, check_images, get_criterion)
from engine.pruning.masks import (Masks, apply_masks, check_masks, current_masks, keep_floats,
                                  mask_counts, reapply_masks, remove_masks)
from engine.pruning.select import (SORTINGS, alive_structures, block_masks, check_choice,
                                   check_count, check_ratio, elementwise_masks,
                                   select_structures, structured_masks)
from engine.pruning.sparsity import LayerSparsity, SparsityReport, sparsity_report

__all__ = [
    "ACTIVATION_CRITERIA", "CRITERIA", "CRITERION_REGISTRY", "SORTINGS",
    "ActivationNorm", "Criterion", "LayerSparsity", "Magnitude", "Masks", "Remain", "Saliency",
    "ScoringInput", "SparsityReport",
    "alive_structures", "apply_masks", "block_masks", "check_choice", "check_count",
    "check_images",
    "check_masks", "check_ratio", "current_masks", "elementwise_masks", "get_criterion",
    "keep_floats", "mask_counts", "reapply_masks", "remove_masks", "select_structures",
    "sparsity_report", "structured_masks",
]
