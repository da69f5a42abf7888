"""Where the prunable structures of a timm Vision Transformer live (docs/algorithm.md,
"Structures").

A *head* h of block b is the q, k and v rows of ``blocks.b.attn.qkv.weight`` for head h plus
columns ``h*D:(h+1)*D`` of ``blocks.b.attn.proj.weight``; a *neuron* n is row n of
``blocks.b.mlp.fc1.weight`` plus column n of ``blocks.b.mlp.fc2.weight``. timm lays the qkv
output out as ``(3, num_heads, head_dim)``, so ``qkv.weight`` viewed as ``(3, H, D, C)`` has the
head on dim 1 and ``proj.weight`` viewed as ``(C, H, D)`` has it on dim 1 too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterator, List, Tuple

import torch
from torch import nn

PARTS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")


@dataclass(frozen=True)
class BlockStructure:
    """The four prunable Linear layers of one transformer block and their shapes."""

    index: int
    prefix: str          # "blocks.3"
    num_heads: int       # H
    head_dim: int        # D
    dim: int             # C, the embedding width
    hidden: int          # N, MLP neurons
    qkv: nn.Linear
    proj: nn.Linear
    fc1: nn.Linear
    fc2: nn.Linear

    @property
    def names(self) -> Tuple[str, str, str, str]:
        return tuple(f"{self.prefix}.{p}" for p in PARTS)  # type: ignore[return-value]

    @property
    def linears(self) -> Tuple[nn.Linear, nn.Linear, nn.Linear, nn.Linear]:
        return self.qkv, self.proj, self.fc1, self.fc2

    @property
    def attn_weights(self) -> int:
        return self.qkv.weight.numel() + self.proj.weight.numel()

    @property
    def mlp_weights(self) -> int:
        return self.fc1.weight.numel() + self.fc2.weight.numel()

    @property
    def weights_per_head(self) -> int:
        return 3 * self.head_dim * self.dim + self.proj.weight.shape[0] * self.head_dim

    @property
    def weights_per_neuron(self) -> int:
        return self.fc1.weight.shape[1] + self.fc2.weight.shape[0]

    @property
    def incoming_per_head(self) -> int:
        """A head's q, k and v rows of ``qkv.weight``: the weights ``remain`` counts."""
        return 3 * self.head_dim * self.dim

    @property
    def incoming_per_neuron(self) -> int:
        """A neuron's row of ``fc1.weight``: the weights ``remain`` counts."""
        return self.fc1.weight.shape[1]

    # --- per-structure views: reshape (no copy) so dim 1 / dim 0 indexes the structure ---
    def qkv_heads(self, t: torch.Tensor) -> torch.Tensor:
        """``(3*H*D, C)`` → ``(3, H, D, C)``."""
        return t.view(3, self.num_heads, self.head_dim, t.shape[-1])

    def proj_heads(self, t: torch.Tensor) -> torch.Tensor:
        """``(C_out, H*D)`` → ``(C_out, H, D)``."""
        return t.view(t.shape[0], self.num_heads, self.head_dim)


@dataclass(frozen=True)
class VitStructure:
    """All prunable blocks of a model, in order."""

    blocks: Tuple[BlockStructure, ...]

    def __iter__(self) -> Iterator[BlockStructure]:
        return iter(self.blocks)

    def __len__(self) -> int:
        return len(self.blocks)

    def linears(self) -> Dict[str, nn.Linear]:
        """Module name → Linear, for every prunable layer, in block order."""
        return {n: m for b in self.blocks for n, m in zip(b.names, b.linears)}

    @property
    def names(self) -> List[str]:
        return [n for b in self.blocks for n in b.names]

    @property
    def total_heads(self) -> int:
        return sum(b.num_heads for b in self.blocks)

    @property
    def total_neurons(self) -> int:
        return sum(b.hidden for b in self.blocks)

    @property
    def total_weights(self) -> int:
        return sum(b.attn_weights + b.mlp_weights for b in self.blocks)


def vit_structure(model: nn.Module) -> VitStructure:
    """Find the prunable structure of a timm-style ViT, or explain what is missing.

    Raises ``TypeError`` for a non-module and ``ValueError`` naming the model class and the
    missing or unsupported piece.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module (a timm VisionTransformer), "
                        f"got {type(model).__name__}")
    cls = type(model).__name__
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, (nn.Sequential, nn.ModuleList)) or len(blocks) == 0:
        raise ValueError(f"model: {cls} has no ViT blocks: expected `model.blocks`, a "
                         f"non-empty nn.Sequential/ModuleList of transformer blocks with "
                         f"`attn.qkv`, `attn.proj`, `mlp.fc1`, `mlp.fc2` (timm VisionTransformer "
                         f"layout)")
    out = []
    for i, block in enumerate(blocks):
        out.append(_describe_block(cls, i, block))
    return VitStructure(tuple(out))


def _describe_block(cls: str, i: int, block: nn.Module) -> BlockStructure:
    where = f"model: {cls}.blocks[{i}]"
    attn, mlp = getattr(block, "attn", None), getattr(block, "mlp", None)
    missing = [p for p in PARTS if not isinstance(_get(block, p), nn.Linear)]
    if attn is None or mlp is None or missing:
        raise ValueError(f"{where} ({type(block).__name__}) is not a ViT block: missing "
                         f"nn.Linear {', '.join(missing) or 'attn/mlp'} (expected timm's "
                         f"`attn.qkv`, `attn.proj`, `mlp.fc1`, `mlp.fc2`)")
    num_heads = getattr(attn, "num_heads", None)
    if not isinstance(num_heads, int) or num_heads < 1:
        raise ValueError(f"{where}.attn ({type(attn).__name__}) has no integer `num_heads`")
    qkv, proj, fc1, fc2 = (_get(block, p) for p in PARTS)
    if qkv.out_features % (3 * num_heads):
        raise ValueError(f"{where}.attn.qkv has {qkv.out_features} outputs, not a multiple of "
                         f"3 × num_heads ({num_heads}); fused qkv in the timm layout is required")
    head_dim = qkv.out_features // (3 * num_heads)
    if proj.in_features != num_heads * head_dim:
        raise ValueError(f"{where}.attn.proj takes {proj.in_features} inputs, expected "
                         f"num_heads × head_dim = {num_heads * head_dim}")
    if getattr(attn, "gate", None) is not None:
        raise ValueError(f"{where}.attn is gated attention (timm `gated=True`), which is not "
                         f"supported: its gate mixes into every head")
    if not isinstance(getattr(attn, "norm", nn.Identity()), nn.Identity):
        raise ValueError(f"{where}.attn uses scale_norm, which normalises across heads and "
                         f"cannot be pruned head by head; build the model with scale_norm=False")
    if fc1.out_features != fc2.in_features:
        raise ValueError(f"{where}.mlp is a gated/GLU MLP (fc1 has {fc1.out_features} outputs, "
                         f"fc2 takes {fc2.in_features}); only timm's plain `Mlp` is supported")
    if not isinstance(getattr(mlp, "norm", nn.Identity()), nn.Identity):
        raise ValueError(f"{where}.mlp normalises its hidden layer (scale_mlp_norm), which "
                         f"mixes neurons; build the model with scale_mlp_norm=False")
    return BlockStructure(index=i, prefix=f"blocks.{i}", num_heads=num_heads, head_dim=head_dim,
                          dim=qkv.in_features, hidden=fc1.out_features,
                          qkv=qkv, proj=proj, fc1=fc1, fc2=fc2)


def _get(block: nn.Module, dotted: str):
    obj = block
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj
