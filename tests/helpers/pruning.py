"""Reference helpers for the pruning tests: masks and structure flags built row by row with plain
loops (timm's qkv layout written out by hand), small batches and training steps."""

from __future__ import annotations

import torch
from torch import nn


def head_rows(H: int, D: int, h: int):
    """Rows of qkv.weight that belong to head h (q, k and v), timm layout (3, H, D)."""
    return [s * H * D + h * D + d for s in range(3) for d in range(D)]


def head_cols(D: int, h: int):
    """Columns of proj.weight that belong to head h."""
    return list(range(h * D, (h + 1) * D))


def geometry(model):
    """(heads, head_dim, neurons) of the model's first block."""
    blk = model.blocks[0]
    H = blk.attn.num_heads
    D = blk.attn.qkv.out_features // (3 * H)
    return H, D, blk.mlp.fc1.out_features


def loop_masks(model, pruned_heads, pruned_neurons):
    """Dense 0/1 masks built row by row: pruned_heads[b] / pruned_neurons[b] are index sets."""
    H, D, _ = geometry(model)
    out = {}
    for b, blk in enumerate(model.blocks):
        qkv = torch.ones_like(blk.attn.qkv.weight)
        proj = torch.ones_like(blk.attn.proj.weight)
        fc1 = torch.ones_like(blk.mlp.fc1.weight)
        fc2 = torch.ones_like(blk.mlp.fc2.weight)
        for h in pruned_heads.get(b, ()):
            for r in head_rows(H, D, h):
                qkv[r] = 0
            for c in head_cols(D, h):
                proj[:, c] = 0
        for n in pruned_neurons.get(b, ()):
            fc1[n] = 0
            fc2[:, n] = 0
        out.update({f"blocks.{b}.attn.qkv": qkv, f"blocks.{b}.attn.proj": proj,
                    f"blocks.{b}.mlp.fc1": fc1, f"blocks.{b}.mlp.fc2": fc2})
    return out


def structure_flags(model, masks):
    """(heads, neurons): per block, a list of keep flags read back from the masks; asserts
    every head / neuron is kept or pruned as a whole (reshaping to (3, H, D, C) etc.)."""
    H, D, N = geometry(model)
    heads, neurons = [], []
    for b, blk in enumerate(model.blocks):
        p = f"blocks.{b}."
        q = masks[p + "attn.qkv"].float().reshape(3, H, D, -1)
        pr = masks[p + "attn.proj"].float().reshape(-1, H, D)
        f1 = masks[p + "mlp.fc1"].float()
        f2 = masks[p + "mlp.fc2"].float()
        hf = q[0, :, 0, 0]
        assert set(hf.tolist()) <= {0.0, 1.0}
        assert torch.equal(q, hf.view(1, H, 1, 1).expand_as(q)), f"block {b}: partial head in qkv"
        assert torch.equal(pr, hf.view(1, H, 1).expand_as(pr)), f"block {b}: proj != qkv heads"
        nf = f1[:, 0]
        assert set(nf.tolist()) <= {0.0, 1.0}
        assert torch.equal(f1, nf.view(N, 1).expand_as(f1)), f"block {b}: partial fc1 row"
        assert torch.equal(f2, nf.view(1, N).expand_as(f2)), f"block {b}: fc2 != fc1 neurons"
        heads.append([bool(x) for x in hf])
        neurons.append([bool(x) for x in nf])
    return heads, neurons


def batch(seed=0, n=4, classes=10, size=32):
    """A fixed random (images, labels) batch."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 3, size, size, generator=g),
            torch.randint(0, classes, (n,), generator=g))


def train_step(model, opt, seed=0):
    """One cross-entropy step on ``batch(seed)``."""
    x, y = batch(seed)
    opt.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def randomize(model, std=0.1, seed=0):
    """Re-draw every parameter (timm zero-initialises biases and norms)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


def zeros_of(masks):
    """Pruned entries over all masks."""
    return sum(int((m == 0).sum()) for m in masks.values())


def head_masks(model, heads=None, neurons=None):
    """Masks pruning a few heads and neurons (default: head 1 of block 0, heads 0 and 3 of
    block 2, every third neuron of block 1)."""
    return loop_masks(model, heads or {0: [1], 2: [0, 3]}, neurons or {1: range(0, 256, 3)})


def pruned_values(model, masks):
    """The model's weights at the pruned positions of ``masks``."""
    return torch.cat([model.get_submodule(n).weight.detach()[m == 0] for n, m in masks.items()])


def kept_values(model, masks):
    """The model's weights at the kept positions of ``masks``."""
    return torch.cat([model.get_submodule(n).weight.detach()[m != 0] for n, m in masks.items()])
