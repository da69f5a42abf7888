"""Shared helpers for the compaction, artifact, measurement and export tests: small custom
ViTs with every parameter re-drawn, masks built row by row, and the MAC count of a ViT worked
out from its shapes."""

from __future__ import annotations

import copy
from typing import Dict, Iterable, List, Optional, Tuple

import timm
import torch
from torch import nn

from engine.pruning import apply_masks

SPEC = {"name": "vit_small_patch16_224",
        "kwargs": {"img_size": 32, "patch_size": 8, "embed_dim": 64, "depth": 3, "num_heads": 4,
                   "num_classes": 10}}
H, D, C_, HID = 4, 16, 64, 256      # heads, head_dim, width, MLP neurons per block
TOKENS = (32 // 8) ** 2 + 1
CLASSES = 10
TOL = 1e-4
X = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def make_model(seed: int = 0, **overrides) -> nn.Module:
    """The SPEC model with every parameter drawn from N(0, 0.15²) (timm initialises biases to
    zero, which would hide a pruned head's q/k/v *bias*), in eval mode."""
    spec = {"name": SPEC["name"], "kwargs": {**SPEC["kwargs"], **overrides}}
    torch.manual_seed(seed)
    model = timm.create_model(spec["name"], pretrained=False, **spec["kwargs"])
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.15)
    model.model_spec = spec
    return model.eval()


def hand_masks(model: nn.Module, heads: Optional[Dict[int, Iterable[int]]] = None,
               neurons: Optional[Dict[int, Iterable[int]]] = None) -> Dict[str, torch.Tensor]:
    """Dense 0/1 masks, row by row, pruning ``heads[b]`` and ``neurons[b]`` of block b: a
    head's q, k and v rows of ``qkv`` (timm's (3, heads, head_dim) layout) and its ``proj``
    columns; a neuron's ``fc1`` row and ``fc2`` column."""
    out = {}
    for b, blk in enumerate(model.blocks):
        heads_n, dim = blk.attn.num_heads, blk.attn.head_dim
        qkv, proj = torch.ones_like(blk.attn.qkv.weight), torch.ones_like(blk.attn.proj.weight)
        fc1, fc2 = torch.ones_like(blk.mlp.fc1.weight), torch.ones_like(blk.mlp.fc2.weight)
        for h in (heads or {}).get(b, ()):
            for part in range(3):
                start = part * heads_n * dim + h * dim
                qkv[start:start + dim] = 0
            proj[:, h * dim:(h + 1) * dim] = 0
        for n in (neurons or {}).get(b, ()):
            fc1[n] = 0
            fc2[:, n] = 0
        out.update({f"blocks.{b}.attn.qkv": qkv, f"blocks.{b}.attn.proj": proj,
                    f"blocks.{b}.mlp.fc1": fc1, f"blocks.{b}.mlp.fc2": fc2})
    return out


def masked(model: nn.Module, masks) -> nn.Module:
    m = copy.deepcopy(model)
    apply_masks(m, masks)
    return m


def set_fused(model: nn.Module, flag: bool) -> None:
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = flag


def out(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def vit_macs(per_block: List[Tuple[int, int]], classes: int = CLASSES) -> int:
    """MACs of one image through the SPEC geometry with ``(heads, neurons)`` per block: patch
    embedding, per block qkv + q·kᵀ + attn·v + proj + fc1 + fc2, and the classifier."""
    patch = (TOKENS - 1) * 3 * 8 * 8 * C_
    total = patch + C_ * classes
    for h, n in per_block:
        total += TOKENS * C_ * 3 * h * D + 2 * h * TOKENS * TOKENS * D + TOKENS * h * D * C_
        total += 2 * TOKENS * C_ * n
    return total


def vit_params(per_block: List[Tuple[int, int]], classes: int = CLASSES) -> int:
    """Parameters of the SPEC geometry with ``(heads, neurons)`` per block, by hand: patch
    embedding, class token, position embedding, per block two LayerNorms, qkv (+ bias),
    proj (+ bias), fc1 (+ bias), fc2 (+ bias); final norm and classifier."""
    total = (3 * 8 * 8 * C_ + C_) + C_ + TOKENS * C_ + 2 * C_ + (C_ * classes + classes)
    for h, n in per_block:
        attn = 0 if h == 0 else (C_ * 3 * h * D + 3 * h * D) + (h * D * C_)
        mlp = 0 if n == 0 else (C_ * n + n) + (n * C_)
        norms = (2 * C_ if h else 0) + (2 * C_ if n else 0)
        total += attn + C_ + mlp + C_ + norms          # proj bias and fc2 bias always stay
    return total
