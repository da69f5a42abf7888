"""Physical compaction: turn a masked ViT into a genuinely smaller one.

A masked model (pruned weights set to zero) runs exactly as slowly as the dense one. ``compact``
removes what the masks prune, so the result does less work:

- a pruned **head** h of block b loses its q, k and v rows of ``attn.qkv`` (weights and biases;
  timm lays the qkv output out as ``(3, num_heads, head_dim)``, so those rows are three separate
  slices) and its columns of ``attn.proj``; ``attn.num_heads`` and ``attn.attn_dim`` shrink,
  ``head_dim`` and ``scale`` stay, fused attention keeps working, and a per-head ``q_norm`` /
  ``k_norm`` (``qk_norm=True``) survives unchanged;
- a pruned **neuron** n loses row n of ``mlp.fc1`` (and its bias) and column n of ``mlp.fc2``;
- a block whose heads are all pruned computes ``attn(x) = proj.bias`` (broadcast over batch and
  tokens): :class:`HeadlessAttention` keeps just that bias (as ``attn.proj.bias``, the same
  state_dict key as before) and the projection dropout; an MLP without neurons likewise becomes
  :class:`NeuronlessMlp` (``mlp.fc2.bias``). Residual, ``ls1``/``ls2`` and ``drop_path`` of the
  block are untouched, so they still apply; the pre-norm (``norm1``/``norm2`` of timm's
  ``Block``) whose output fed only the removed structures becomes ``nn.Identity``.

Why this is exact: a pruned head's q/k/v rows are zero but its qkv *biases* are not, so the head
still attends and produces a constant value vector — which then meets zero ``proj`` columns and
contributes nothing. Likewise a pruned neuron outputs ``act(b1[n])`` into a zero ``fc2`` column.
So the compacted model equals the masked model (``apply_masks``) up to float rounding, in eval
and in train mode (dropout aside).

Masks: ``{module name: tensor shaped like its weight}``, nonzero = keep, keyed
``blocks.<b>.attn.qkv`` / ``attn.proj`` / ``mlp.fc1`` / ``mlp.fc2``; a missing entry keeps
everything. A head or neuron must be pruned *whole*: masks that cut part of one are a
masks/model mismatch (``ValueError``) — compaction could not reproduce them.

Saving, loading and ``torch.export`` of a compacted model are in :mod:`engine.artifact`;
parameter and MAC counts and latency timing in :mod:`engine.measure`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from engine.pruning import remove_masks
from engine.structure import BlockStructure, vit_structure

# --------------------------------------------------------------------------------------------
# What is kept
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BlockKeep:
    """Which heads and MLP neurons of one block survive (indices into the dense block)."""

    heads_total: int
    heads_kept: Tuple[int, ...]
    neurons_total: int
    neurons_kept: Tuple[int, ...]

    def to_json(self) -> Dict[str, Any]:
        return {"heads_total": self.heads_total, "heads_kept": list(self.heads_kept),
                "neurons_total": self.neurons_total, "neurons_kept": list(self.neurons_kept)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "BlockKeep":
        return cls(int(d["heads_total"]), tuple(int(i) for i in d["heads_kept"]),
                   int(d["neurons_total"]), tuple(int(i) for i in d["neurons_kept"]))


@dataclass(frozen=True)
class Kept:
    """The compacted shape of a whole model: one :class:`BlockKeep` per transformer block."""

    blocks: Tuple[BlockKeep, ...]

    @property
    def heads_kept(self) -> int:
        return sum(len(b.heads_kept) for b in self.blocks)

    @property
    def heads_total(self) -> int:
        return sum(b.heads_total for b in self.blocks)

    @property
    def neurons_kept(self) -> int:
        return sum(len(b.neurons_kept) for b in self.blocks)

    @property
    def neurons_total(self) -> int:
        return sum(b.neurons_total for b in self.blocks)

    def to_json(self) -> List[Dict[str, Any]]:
        return [dict(block=i, **b.to_json()) for i, b in enumerate(self.blocks)]

    @classmethod
    def from_json(cls, blocks: Sequence[Mapping[str, Any]]) -> "Kept":
        return cls(tuple(BlockKeep.from_json(b) for b in blocks))

    @classmethod
    def everything(cls, model: nn.Module) -> "Kept":
        """Keep every head and neuron (a dense model, or a checkpoint without masks)."""
        return cls(tuple(BlockKeep(b.num_heads, tuple(range(b.num_heads)),
                                   b.hidden, tuple(range(b.hidden)))
                         for b in vit_structure(model)))


MasksOrKept = Union[Mapping[str, torch.Tensor], Kept, None]


def kept_from_masks(model: nn.Module, masks: Optional[Mapping[str, torch.Tensor]]) -> Kept:
    """Read which heads/neurons survive from masks on the *dense* ``model``.

    Raises ``ValueError`` ("masks/model mismatch: …") for a mask naming no prunable layer, a mask
    whose shape differs from its weight, or a head/neuron that is only partly masked.
    """
    structure = vit_structure(model)
    _check_supported(model)
    masks = dict(masks or {})
    known = set(structure.names)
    unknown = sorted(k for k in masks if k not in known)
    if unknown:
        raise ValueError(f"masks/model mismatch: no prunable layer named {unknown[0]!r} "
                         f"({len(unknown)} unknown mask key(s)); the model has {len(structure)} "
                         f"blocks with layers like {structure.names[0]!r}")
    out = []
    for blk in structure:
        qkv, proj, fc1, fc2 = (_keep_tensor(masks.get(name), lin, name)
                               for name, lin in zip(blk.names, blk.linears))
        heads = _whole(blk, "head", blk.num_heads,
                       [(f"{blk.prefix}.attn.qkv", blk.qkv_heads(qkv).transpose(0, 1)),
                        (f"{blk.prefix}.attn.proj", blk.proj_heads(proj).transpose(0, 1))])
        neurons = _whole(blk, "neuron", blk.hidden,
                         [(f"{blk.prefix}.mlp.fc1", fc1), (f"{blk.prefix}.mlp.fc2", fc2.t())])
        out.append(BlockKeep(blk.num_heads, heads, blk.hidden, neurons))
    return Kept(tuple(out))


def _keep_tensor(mask: Optional[torch.Tensor], lin: nn.Linear, name: str) -> torch.Tensor:
    shape = tuple(lin.weight.shape)
    if mask is None:
        return torch.ones(shape, dtype=torch.bool)
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"masks/model mismatch: mask {name!r} is a {type(mask).__name__}, "
                         f"not a tensor")
    if tuple(mask.shape) != shape:
        raise ValueError(f"masks/model mismatch: mask {name!r} has shape {tuple(mask.shape)} "
                         f"but the weight has shape {shape}")
    return mask.detach().to("cpu") != 0


def _whole(blk: BlockStructure, what: str, count: int,
           parts: List[Tuple[str, torch.Tensor]]) -> Tuple[int, ...]:
    """Indices of the structures kept; each part is shaped (count, ...) after moving the axis."""
    alive = torch.zeros(count, dtype=torch.long)
    size = 0
    for _, t in parts:
        t = t.reshape(count, -1)
        alive += t.sum(dim=1)
        size += t.shape[1]
    partial = ((alive > 0) & (alive < size)).nonzero().flatten().tolist()
    if partial:
        i = partial[0]
        detail = ", ".join(f"{name}: {int(t.reshape(count, -1)[i].sum())}/"
                           f"{t.reshape(count, -1).shape[1]}" for name, t in parts)
        raise ValueError(f"masks/model mismatch: block {blk.index} {what} {i} is only partly "
                         f"masked (entries kept — {detail}); compaction needs whole {what}s "
                         f"({len(partial)} partly masked {what}(s) in this block)")
    return tuple((alive == size).nonzero().flatten().tolist())


def _check_supported(model: nn.Module) -> None:
    """Beyond :func:`engine.structure.vit_structure`: compaction rewrites timm's own modules, so it
    accepts only those whose forward it knows (a subclass may compute something else)."""
    from timm.layers import Attention, Mlp
    from timm.models.vision_transformer import Block, ResPostBlock

    for i, block in enumerate(model.blocks):
        where = f"block {i}"
        if type(block) not in (Block, ResPostBlock):
            raise ValueError(f"{where}: {type(block).__name__} is not supported by compaction "
                             f"(only timm's Block and ResPostBlock, which call attn and mlp "
                             f"as whole sub-modules)")
        if not isinstance(block.attn, HeadlessAttention) and type(block.attn) is not Attention:
            raise ValueError(f"{where}: attention {type(block.attn).__name__} is not supported "
                             f"by compaction (only timm.layers.Attention)")
        if not isinstance(block.mlp, NeuronlessMlp) and type(block.mlp) is not Mlp:
            raise ValueError(f"{where}: MLP {type(block.mlp).__name__} is not supported by "
                             f"compaction (only timm.layers.Mlp; GLU/SwiGLU MLPs gate neurons "
                             f"in pairs)")


# --------------------------------------------------------------------------------------------
# Compaction
# --------------------------------------------------------------------------------------------

class _Bias(nn.Module):
    """Holds a bias under the name ``bias``, so the state_dict key is that of the old Linear."""

    def __init__(self, bias: Optional[torch.Tensor]) -> None:
        super().__init__()
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(),
                                                           requires_grad=bias.requires_grad)


class HeadlessAttention(nn.Module):
    """Attention of a block whose heads were all pruned: returns ``proj.bias`` for every token."""

    num_heads = 0

    def __init__(self, attn: nn.Module) -> None:
        super().__init__()
        self.dim_out = attn.proj.out_features
        self.proj = _Bias(attn.proj.bias)
        self.proj_drop = attn.proj_drop

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None,
                is_causal: bool = False) -> torch.Tensor:
        return self.proj_drop(_constant(x, self.proj.bias, self.dim_out))


class NeuronlessMlp(nn.Module):
    """MLP whose neurons were all pruned: returns ``fc2.bias`` for every token."""

    hidden_features = 0

    def __init__(self, mlp: nn.Module) -> None:
        super().__init__()
        self.out_features = mlp.fc2.out_features
        self.fc2 = _Bias(mlp.fc2.bias)
        self.drop2 = mlp.drop2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(_constant(x, self.fc2.bias, self.out_features))


def _constant(x: torch.Tensor, bias: Optional[torch.Tensor], dim: int) -> torch.Tensor:
    if bias is None:
        return x.new_zeros(x.shape[:-1] + (dim,))
    # a real broadcast add (not expand) so autograd, torch.export and in-place ops downstream
    # all see an ordinary tensor
    return x.new_zeros(x.shape[:-1] + (dim,)) + bias


def compact(model: nn.Module, masks_or_kept: MasksOrKept) -> nn.Module:
    """A physically smaller copy of ``model`` (``model`` itself is not changed).

    ``masks_or_kept`` is a masks dict (see module docstring), a :class:`Kept`, or ``None``
    (keep everything). The copy keeps ``model``'s train/eval mode, device, dtype and
    ``requires_grad`` flags. Raises ``ValueError`` for unsupported architectures and
    masks/model mismatches.
    """
    kept = (masks_or_kept if isinstance(masks_or_kept, Kept)
            else kept_from_masks(model, masks_or_kept))
    structure = vit_structure(model)
    _check_supported(model)
    if len(kept.blocks) != len(structure):
        raise ValueError(f"masks/model mismatch: structure has {len(kept.blocks)} blocks, the "
                         f"model {len(structure)}")
    for blk, keep in zip(structure, kept.blocks):
        if (keep.heads_total, keep.neurons_total) != (blk.num_heads, blk.hidden):
            raise ValueError(f"masks/model mismatch: block {blk.index} has {blk.num_heads} heads "
                             f"and {blk.hidden} neurons, the structure expects "
                             f"{keep.heads_total} and {keep.neurons_total}")
        bad = [i for i in keep.heads_kept if not 0 <= i < blk.num_heads]
        bad += [i for i in keep.neurons_kept if not 0 <= i < blk.hidden]
        if bad or len(set(keep.heads_kept)) != len(keep.heads_kept) \
                or len(set(keep.neurons_kept)) != len(keep.neurons_kept):
            raise ValueError(f"masks/model mismatch: block {blk.index}: kept indices out of "
                             f"range or repeated")
    new = copy.deepcopy(model)
    remove_masks(new)  # the copy has no pruned weights left to mask
    with torch.no_grad():
        for blk, block, keep in zip(structure, new.blocks, kept.blocks):
            _compact_attn(block, blk, keep.heads_kept)
            _compact_mlp(block, keep.neurons_kept)
    return new


def _compact_attn(block: nn.Module, blk: BlockStructure, heads: Sequence[int]) -> None:
    attn = block.attn
    if len(heads) == blk.num_heads:
        return
    if not heads:
        block.attn = HeadlessAttention(attn)
        if _pre_norm(block):
            block.norm1 = nn.Identity()     # its output fed only the removed heads
        return
    H, D = blk.num_heads, blk.head_dim
    idx = torch.tensor(heads, dtype=torch.long)
    cols = (idx[:, None] * D + torch.arange(D)).flatten()                 # (k*D,)
    rows = torch.cat([s * H * D + cols for s in range(3)])                # q, k, v blocks
    _slice_linear(attn.qkv, rows=rows)
    _slice_linear(attn.proj, cols=cols)
    attn.num_heads = len(heads)
    attn.attn_dim = len(heads) * D


def _compact_mlp(block: nn.Module, neurons: Sequence[int]) -> None:
    mlp = block.mlp
    if len(neurons) == mlp.fc1.out_features:
        return
    if not neurons:
        block.mlp = NeuronlessMlp(mlp)
        if _pre_norm(block):
            block.norm2 = nn.Identity()
        return
    idx = torch.tensor(neurons, dtype=torch.long)
    _slice_linear(mlp.fc1, rows=idx)
    _slice_linear(mlp.fc2, cols=idx)


def _pre_norm(block: nn.Module) -> bool:
    """timm's pre-norm Block normalises the input of attn/mlp (ResPostBlock their output)."""
    from timm.models.vision_transformer import Block

    return type(block) is Block


def _slice_linear(lin: nn.Linear, rows: Optional[torch.Tensor] = None,
                  cols: Optional[torch.Tensor] = None) -> None:
    w = lin.weight
    if rows is not None:
        rows = rows.to(w.device)
        lin.weight = nn.Parameter(w[rows].clone(), requires_grad=w.requires_grad)
        if lin.bias is not None:
            lin.bias = nn.Parameter(lin.bias[rows].clone(), requires_grad=lin.bias.requires_grad)
        lin.out_features = len(rows)
    if cols is not None:
        cols = cols.to(w.device)
        lin.weight = nn.Parameter(lin.weight[:, cols].clone(), requires_grad=w.requires_grad)
        lin.in_features = len(cols)


def kept_of(model: nn.Module) -> List[Tuple[int, int]]:
    """(heads, neurons) each block of ``model`` computes now — dense or compacted."""
    out = []
    for block in model.blocks:
        heads = int(block.attn.num_heads)
        neurons = 0 if isinstance(block.mlp, NeuronlessMlp) else int(block.mlp.fc1.out_features)
        out.append((heads, neurons))
    return out
