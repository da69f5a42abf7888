"""Shared fixtures: small timm Vision Transformers that build in milliseconds."""

from __future__ import annotations

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

TINY = dict(img_size=32, patch_size=8, embed_dim=64, depth=3, num_heads=4, num_classes=10)


@pytest.fixture
def tiny_vit():
    """Factory: ``tiny_vit(seed=0, **overrides)`` → a fresh 3-block, 4-head, width-64 ViT on
    32 px images (17 tokens) with timm's initialisation drawn from ``seed``, in eval mode."""

    def make(seed: int = 0, **overrides) -> VisionTransformer:
        torch.manual_seed(seed)
        return VisionTransformer(**{**TINY, **overrides}).eval()

    return make


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module's tests (restored after). The models in tests are
    small; on a shared 2-core machine, 2 OpenMP threads make every op wait for a descheduled
    thread (a tiny-ViT training step measured 25x slower under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
