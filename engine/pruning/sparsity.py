"""How sparse a model is, per block and overall: the table of the ``pruned`` and ``hard_cut``
events and of the report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import List, Optional

import torch
from torch import nn

from engine.pruning.masks import Masks, check_masks, current_masks, mask_counts
from engine.structure import vit_structure


@dataclass
class LayerSparsity:
    """One row of the seed report's table (sparsities in percent)."""

    block: int
    attn_sparsity: float
    heads_kept: int
    heads_total: int
    mlp_sparsity: float
    neurons_kept: int
    neurons_total: int


@dataclass
class SparsityReport:
    """Per-block and overall sparsity of the prunable weights (percent)."""

    layers: List[LayerSparsity] = field(default_factory=list)
    zeros: int = 0
    total: int = 0

    @property
    def sparsity(self) -> float:
        return 100.0 * self.zeros / self.total if self.total else 0.0

    @property
    def heads_kept(self) -> int:
        return sum(r.heads_kept for r in self.layers)

    @property
    def heads_total(self) -> int:
        return sum(r.heads_total for r in self.layers)

    @property
    def neurons_kept(self) -> int:
        return sum(r.neurons_kept for r in self.layers)

    @property
    def neurons_total(self) -> int:
        return sum(r.neurons_total for r in self.layers)

    def to_dict(self) -> dict:
        """JSON-ready: the fields of the ``pruned``/``hard_cut`` events."""
        return {"sparsity": round(self.sparsity, 4), "zeros": self.zeros, "total": self.total,
                "heads_kept": self.heads_kept, "heads_total": self.heads_total,
                "neurons_kept": self.neurons_kept, "neurons_total": self.neurons_total,
                "layers": [{k: round(v, 4) if isinstance(v, float) else v
                            for k, v in asdict(r).items()} for r in self.layers]}

    def __str__(self) -> str:
        lines = [f"overall sparsity {self.sparsity:.2f}% ({self.zeros:,} / {self.total:,}), "
                 f"heads {self.heads_kept}/{self.heads_total}, "
                 f"neurons {self.neurons_kept}/{self.neurons_total}",
                 "block  attn%   heads   mlp%   neurons"]
        for r in self.layers:
            lines.append(f"{r.block:>5}  {r.attn_sparsity:5.2f}  "
                         f"{r.heads_kept:>2}/{r.heads_total:<3}"
                         f"  {r.mlp_sparsity:5.2f}  {r.neurons_kept}/{r.neurons_total}")
        return "\n".join(lines)


@torch.no_grad()
def sparsity_report(model: nn.Module, masks: Optional[Masks] = None) -> SparsityReport:
    """Sparsity per block and overall, from ``masks``; without masks from the masks applied to
    the model, and for an unmasked model from its weights that are exactly zero.

    A head (neuron) counts as kept while any of its weights is kept.
    """
    struct = vit_structure(model)
    if masks is None:
        masks = current_masks(model)
        if masks is None:
            masks = {n: lin.weight.detach() != 0 for n, lin in struct.linears().items()}
    masks = check_masks(struct, masks, "masks")
    alive_h, alive_n = mask_counts(struct, masks)
    report = SparsityReport()
    for b, ah, an in zip(struct, alive_h, alive_n):
        alive = [int((masks[n] != 0).sum()) if n in masks else lin.weight.numel()
                 for n, lin in zip(b.names, b.linears)]
        attn_zero = b.attn_weights - alive[0] - alive[1]
        mlp_zero = b.mlp_weights - alive[2] - alive[3]
        report.layers.append(LayerSparsity(
            block=b.index, attn_sparsity=100.0 * attn_zero / b.attn_weights,
            heads_kept=int((ah > 0).sum()), heads_total=b.num_heads,
            mlp_sparsity=100.0 * mlp_zero / b.mlp_weights,
            neurons_kept=int((an > 0).sum()), neurons_total=b.hidden))
        report.zeros += attn_zero + mlp_zero
        report.total += b.attn_weights + b.mlp_weights
    return report
