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

On disk (:func:`save` / :func:`load`): ``model.safetensors`` (the compacted state_dict) and
``structure.json`` (the model spec plus, per block, the indices of the heads and neurons kept),
from which :func:`load` rebuilds the compacted module. :func:`export_program` writes a
``torch.export`` program (``.pt2``) that plain PyTorch loads without tuiprune or timm.
"""

from __future__ import annotations

import copy
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from engine.pruning import remove_masks
from engine.structure import BlockStructure, describe

STRUCTURE_FILE = "structure.json"
WEIGHTS_FILE = "model.safetensors"
PROGRAM_FILE = "model.pt2"
STRUCTURE_FORMAT = 1


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
                         for b in describe(model)))


MasksOrKept = Union[Mapping[str, torch.Tensor], Kept, None]


def kept_from_masks(model: nn.Module, masks: Optional[Mapping[str, torch.Tensor]]) -> Kept:
    """Read which heads/neurons survive from masks on the *dense* ``model``.

    Raises ``ValueError`` ("masks/model mismatch: …") for a mask naming no prunable layer, a mask
    whose shape differs from its weight, or a head/neuron that is only partly masked.
    """
    structure = describe(model)
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
    """Beyond :func:`engine.structure.describe`: compaction rewrites timm's own modules, so it
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
    structure = describe(model)
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


# --------------------------------------------------------------------------------------------
# Saving and loading
# --------------------------------------------------------------------------------------------

def save(model: nn.Module, masks_or_kept: MasksOrKept, directory: Union[str, Path], *,
         model_spec: Optional[Mapping[str, Any]] = None, extra: Optional[Mapping] = None) -> Kept:
    """Write ``model.safetensors`` + ``structure.json`` into ``directory`` (created if needed).

    ``model`` is either the dense model (it is compacted with ``masks_or_kept`` first) or a
    model already compacted with that :class:`Kept`. ``model_spec`` (``{"name": timm name,
    "kwargs": {...}}``, as in the checkpoints) is what :func:`load` rebuilds the dense skeleton
    from; it defaults to ``model.model_spec`` when the model carries one. Returns the
    :class:`Kept` written.
    """
    spec = model_spec if model_spec is not None else getattr(model, "model_spec", None)
    if not spec or "name" not in spec:
        raise ValueError("save: pass model_spec={'name': <timm model name>, 'kwargs': {...}} so "
                         "that load() can rebuild the model")
    sizes = kept_of(model)
    if isinstance(masks_or_kept, Kept):
        kept = masks_or_kept
        want = [(len(b.heads_kept), len(b.neurons_kept)) for b in kept.blocks]
        dense = [(b.heads_total, b.neurons_total) for b in kept.blocks]
        if sizes == want:
            small = model
        elif sizes == dense:
            small = compact(model, kept)
        else:
            raise ValueError(f"masks/model mismatch: the model's blocks compute {sizes} "
                             f"(heads, neurons), the structure keeps {want} of {dense}")
    else:
        kept = kept_from_masks(model, masks_or_kept)
        small = compact(model, kept)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in small.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    doc = {"format": STRUCTURE_FORMAT,
           "model_spec": {"name": spec["name"], "kwargs": dict(spec.get("kwargs") or {})},
           "heads_kept": kept.heads_kept, "heads_total": kept.heads_total,
           "neurons_kept": kept.neurons_kept, "neurons_total": kept.neurons_total,
           "blocks": kept.to_json()}
    if extra:
        doc.update(extra)
    (directory / STRUCTURE_FILE).write_text(json.dumps(doc, indent=1) + "\n")
    return kept


def build_dense(model_spec: Mapping[str, Any]) -> nn.Module:
    """The dense, randomly initialised model of a checkpoint's ``model_spec``."""
    from engine.checkpoint import build_model

    return build_model({"name": model_spec["name"], "kwargs": dict(model_spec.get("kwargs") or {})})


def read_structure(directory: Union[str, Path]) -> Dict[str, Any]:
    path = Path(directory) / STRUCTURE_FILE
    doc = json.loads(path.read_text())
    if doc.get("format") != STRUCTURE_FORMAT:
        raise ValueError(f"{path}: structure format {doc.get('format')!r}, this version reads "
                         f"{STRUCTURE_FORMAT}")
    return doc


def load(directory: Union[str, Path], map_location: str = "cpu") -> nn.Module:
    """Rebuild the compacted model written by :func:`save` (in eval mode)."""
    from safetensors.torch import load_file

    doc = read_structure(directory)
    dense = build_dense(doc["model_spec"])
    small = compact(dense, Kept.from_json(doc["blocks"]))
    small.load_state_dict(load_file(str(Path(directory) / WEIGHTS_FILE), device=map_location),
                          strict=True)
    return small.to(map_location).eval()


def export_program(model: nn.Module, path: Union[str, Path], example: torch.Tensor) -> None:
    """Write a ``torch.export`` program (``.pt2``) with a dynamic batch dimension.

    Load it with ``torch.export.load(path).module()`` — plain PyTorch, no tuiprune, no timm.
    """
    from torch.export import Dim

    was_training = model.training
    model.eval()
    try:
        program = torch.export.export(
            model, (example,), dynamic_shapes={"x": {0: Dim("batch", min=1, max=65536)}})
    finally:
        model.train(was_training)
    torch.export.save(program, str(path))


# --------------------------------------------------------------------------------------------
# Size and speed
# --------------------------------------------------------------------------------------------

def input_shape(model: nn.Module) -> Tuple[int, int, int]:
    """(channels, height, width) the model's patch embedding expects."""
    pe = model.patch_embed
    h, w = pe.img_size
    return int(pe.proj.in_channels), int(h), int(w)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, batch: int = 1) -> int:
    """Multiply-accumulates of one forward pass on ``batch`` images.

    Counted with ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2) on timm's non-fused
    attention path, whose matmuls the counter sees (it does not count CPU SDPA kernels): all
    Linear layers, the patch-embedding convolution and the two attention matmuls
    (q·kᵀ and attn·v). Element-wise ops (norms, softmax, GELU) are not MACs and not counted.
    """
    from torch.utils.flop_counter import FlopCounterMode

    attns = [m for m in model.modules() if hasattr(m, "fused_attn")]
    saved = [m.fused_attn for m in attns]
    was_training = model.training
    p = next(model.parameters())
    x = torch.zeros((batch,) + input_shape(model), dtype=p.dtype, device=p.device)
    try:
        for m in attns:
            m.fused_attn = False
        model.eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        for m, f in zip(attns, saved):
            m.fused_attn = f
        model.train(was_training)
    return int(counter.get_total_flops()) // 2


def time_models(models: Mapping[str, nn.Module], batch: int, *, reps: int, warmup: int = 2,
                device: str = "cpu", seed: int = 0) -> Dict[str, Dict[str, Any]]:
    """Median forward latency of each model, measured *interleaved*.

    Every repetition times each model once, alternating the order between repetitions, so
    drift (thermal, other load) hits all models alike. Eval mode, ``torch.inference_mode``,
    one fixed random batch; CUDA timings synchronise around each forward. Returns, per model,
    ``median_ms``, ``min_ms``, ``max_ms``, ``reps`` and ``batch``.
    """
    gen = torch.Generator().manual_seed(seed)
    first = next(iter(models.values()))
    x = torch.randn((batch,) + input_shape(first), generator=gen).to(device)
    names = list(models)
    mods = {n: models[n].to(device).eval() for n in names}
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times: Dict[str, List[float]] = {n: [] for n in names}
    with torch.inference_mode():
        for n in names:
            for _ in range(warmup):
                mods[n](x)
        sync()
        for r in range(reps):
            for n in (names if r % 2 == 0 else names[::-1]):
                sync()
                t0 = time.perf_counter()
                mods[n](x)
                sync()
                times[n].append((time.perf_counter() - t0) * 1000.0)
    return {n: {"median_ms": statistics.median(t), "min_ms": min(t), "max_ms": max(t),
                "reps": len(t), "batch": batch} for n, t in times.items()}


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def max_abs_diff(a: nn.Module, b: nn.Module, batch: int = 2, seed: int = 0) -> float:
    """Largest |a(x) − b(x)| over a random batch, both in eval mode (modes restored)."""
    gen = torch.Generator().manual_seed(seed)
    p = next(a.parameters())
    x = torch.randn((batch,) + input_shape(a), generator=gen).to(device=p.device, dtype=p.dtype)
    modes = a.training, b.training
    a.eval(), b.eval()
    try:
        with torch.no_grad():
            d = (a(x) - b(x)).abs().max().item()
    finally:
        a.train(modes[0]), b.train(modes[1])
    return d if math.isfinite(d) else float("inf")

