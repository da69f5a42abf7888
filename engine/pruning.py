"""Element-wise and structured (head / neuron) pruning masks for timm Vision Transformers.

The three steps of one pruning step (DESIGN.md §2)::

    m_e = elementwise_masks(model, rate=0.3, masks=current)          # global L1 on alive weights
    m_s = structured_masks(model, m_e, head_ratio=0.3, mlp_ratio=0.3,
                           sorting="global", criterion="magnitude")  # whole heads / neurons
    apply_masks(model, m_s)                                          # Refill: cut now

Masks are dicts keyed by the Linear module name (``"blocks.3.attn.qkv"``, ``…attn.proj``,
``…mlp.fc1``, ``…mlp.fc2``) holding tensors shaped like the weight, 1 = keep, 0 = pruned.
Every function accepts any dtype (nonzero = keep) and any subset of the prunable layers (a
missing layer = nothing pruned there).

``structured_masks`` returns float *broadcast views* (built from one keep-flag per row/column,
so making them costs no memory traffic); they read and compute like ordinary tensors — call
``.clone()`` before writing into one in place.
"""

from __future__ import annotations

import math
import numbers
import weakref
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import torch
from torch import nn
from torch.func import functional_call
from torch.optim.optimizer import register_optimizer_step_post_hook

from engine.keep import keep_count
from engine.structure import BlockStructure, VitStructure, describe

Masks = Dict[str, torch.Tensor]

SORTINGS = ("global", "layer-wise")
CRITERIA = ("remain", "magnitude", "l1", "l2", "saliency")
ACTIVATION_CRITERIA = ("l1", "l2", "saliency")


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


def _check_choice(value, name: str, choices: Tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; "
                         f"got {value!r}")
    return value


def _check_masks(struct: VitStructure, masks, name: str) -> Masks:
    """Validate a mask dict against the model: known layer names, weight-shaped tensors."""
    if masks is None:
        return {}
    if not isinstance(masks, dict):
        raise TypeError(f"{name} must be a dict of module name → tensor, got "
                        f"{type(masks).__name__}")
    linears = struct.linears()
    out = {}
    for key, mask in masks.items():
        if key not in linears:
            raise ValueError(f"{name} has a mask for {key!r}, which is not a prunable layer of "
                             f"this model (expected names like {struct.names[0]!r} … "
                             f"{struct.names[-1]!r})")
        if not isinstance(mask, torch.Tensor):
            raise TypeError(f"{name}[{key!r}] must be a tensor, got {type(mask).__name__}")
        shape = tuple(linears[key].weight.shape)
        if tuple(mask.shape) != shape:
            raise ValueError(f"{name}[{key!r}] has shape {tuple(mask.shape)} but the model's "
                             f"weight is {shape}: the masks belong to a different model")
        out[key] = mask
    return out


# --------------------------------------------------------------------------- element-wise
@torch.no_grad()
def elementwise_masks(model: nn.Module, rate: float, masks: Optional[Masks] = None) -> Masks:
    """Global L1 magnitude pruning over all prunable weights.

    Removes ``int(rate * alive)`` of the weights still alive under ``masks`` (already-pruned
    weights stay pruned), smallest ``|w|`` first; ties at the threshold go to the earlier
    weight in layer order. Returns a dense mask (weight dtype) for every prunable layer.
    """
    struct = describe(model)
    rate = check_ratio(rate, "rate")
    prev = _check_masks(struct, masks, "masks")
    linears = struct.linears()
    scores = []
    for name, lin in linears.items():
        a = lin.weight.detach().abs().flatten().float()
        if name in prev:
            a = torch.where(prev[name].flatten().to(a.device) != 0, a, torch.full_like(a, -1.0))
        scores.append(a)
    flat = torch.cat(scores)
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
@dataclass
class _Scores:
    """Per-block head and neuron scores, and which structures are still alive."""

    heads: List[torch.Tensor]
    neurons: List[torch.Tensor]
    heads_alive: List[torch.Tensor]
    neurons_alive: List[torch.Tensor]


def structured_masks(model: nn.Module, m_e: Optional[Masks], head_ratio: float = 0.3,
                     mlp_ratio: float = 0.3, sorting: str = "global",
                     criterion: str = "magnitude",
                     calib: Optional[Iterable] = None,
                     loss_fn: Optional[Callable] = None) -> Masks:
    """Score every head and neuron, keep the best, return a whole-structure mask.

    ``head_ratio``/``mlp_ratio`` are the fractions of the *alive* heads/neurons to prune in
    this step (at the first step: of all of them). Structures already pruned — every weight of
    the structure removed in ``m_e`` — stay pruned and do not count. ``sorting="global"``
    ranks all blocks together and keeps ``max(1, int(alive * (1 - ratio)))``; ``"layer-wise"``
    does the same per block. Ties are stable: the earlier block, then the lower index, wins.

    Criteria: ``remain`` (weights of the structure alive in ``m_e``), ``magnitude`` (sum |w|
    of its qkv rows / fc1 row in the current weights), ``l1``/``l2`` (mean |·| / RMS of its
    qkv features / fc1 outputs over ``calib``), ``saliency`` (|Σ w·∂L/∂w| over its weights on
    ``calib``). Activation criteria run in eval mode on the current weights with ``m_e``
    applied, without modifying the model; ``calib`` is an iterable of ``(images, labels)``
    batches as the model expects them (normalised), and ``loss_fn`` defaults to cross-entropy.
    """
    struct = describe(model)
    head_ratio = check_ratio(head_ratio, "head_ratio")
    mlp_ratio = check_ratio(mlp_ratio, "mlp_ratio")
    _check_choice(sorting, "sorting", SORTINGS)
    _check_choice(criterion, "criterion", CRITERIA)
    m_e = _check_masks(struct, m_e, "m_e")
    if criterion in ACTIVATION_CRITERIA and calib is None:
        raise ValueError(f"criterion {criterion!r} measures activations and needs `calib`, an "
                         f"iterable of (images, labels) batches; or use 'magnitude'/'remain'")

    scores = _score(model, struct, m_e, criterion, calib, loss_fn)
    keep_heads = _select(scores.heads, scores.heads_alive, head_ratio, sorting)
    keep_neurons = _select(scores.neurons, scores.neurons_alive, mlp_ratio, sorting)
    masks: Masks = {}
    for b, kh, kn in zip(struct, keep_heads, keep_neurons):
        masks.update(_block_masks(b, kh, kn))
    return masks


def _select(scores: List[torch.Tensor], alive: List[torch.Tensor], ratio: float,
            sorting: str) -> List[torch.Tensor]:
    """Keep flags per block: the ``max(1, int(alive * (1 - ratio)))`` best alive structures,
    ranked globally or within each block; stable ties."""
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
        n_alive = int(a.sum())
        k = keep_count(n_alive, ratio)
        key = torch.where(a, s, torch.full_like(s, -math.inf))
        order = torch.sort(key, descending=True, stable=True).indices
        flags = torch.zeros_like(a)
        flags[order[:k]] = True
        keep.extend(flags.split([x.numel() for x in group_scores]))
    return keep


def _block_masks(b: BlockStructure, keep_heads: torch.Tensor,
                 keep_neurons: torch.Tensor) -> Masks:
    """Broadcast per-head / per-neuron keep flags to weight-shaped (view) masks."""
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


def _alive(struct: VitStructure, m_e: Masks) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """Structures with at least one weight alive in ``m_e`` (no mask = all alive)."""
    counts = _mask_counts(struct, m_e)
    return [c > 0 for c in counts[0]], [c > 0 for c in counts[1]]


def _mask_counts(struct: VitStructure, m_e: Masks):
    """Per block: weights alive in ``m_e`` for each head and each neuron (float tensors)."""
    heads, neurons = [], []
    for b in struct:
        mq, mp, m1, m2 = (m_e.get(n) for n in b.names)
        dev = b.qkv.weight.device
        # Reduce along the contiguous dim first, then fold rows/columns into heads: strided
        # multi-dim reductions over the (3, H, D, C) view are several times slower.
        h = (_f(mq).sum(dim=1).view(3, b.num_heads, b.head_dim).sum(dim=(0, 2))
             if mq is not None
             else torch.full((b.num_heads,), float(3 * b.head_dim * b.dim), device=dev))
        h = h + (_f(mp).sum(dim=0).view(b.num_heads, b.head_dim).sum(dim=1) if mp is not None
                 else float(b.proj.weight.shape[0] * b.head_dim))
        n = (_f(m1).sum(dim=1) if m1 is not None
             else torch.full((b.hidden,), float(b.dim), device=dev))
        n = n + (_f(m2).sum(dim=0) if m2 is not None else float(b.fc2.weight.shape[0]))
        heads.append(h)
        neurons.append(n)
    return heads, neurons


def _f(mask: torch.Tensor) -> torch.Tensor:
    """Mask as 0/1 floats: float masks are taken as they are (their values are 0/1), other
    dtypes are compared with 0."""
    return mask if mask.is_floating_point() else (mask != 0).float()


def _score(model: nn.Module, struct: VitStructure, m_e: Masks, criterion: str, calib,
           loss_fn) -> _Scores:
    heads_alive, neurons_alive = _alive(struct, m_e)
    if criterion == "remain":
        heads, neurons = _mask_counts(struct, m_e)
    elif criterion == "magnitude":
        heads, neurons = _magnitude(struct)
    elif criterion in ("l1", "l2"):
        heads, neurons = _activation(model, struct, m_e, calib, criterion)
    else:
        heads, neurons = _saliency(model, struct, m_e, calib, loss_fn)
    return _Scores(heads, neurons, heads_alive, neurons_alive)


@torch.no_grad()
def _magnitude(struct: VitStructure):
    heads, neurons = [], []
    for b in struct:
        # Row-wise L1 over the contiguous input dim, then fold rows into heads. abs().sum()
        # is ~2.5x faster than linalg.vector_norm(ord=1) on CPU.
        rows = b.qkv.weight.detach().abs().sum(dim=1)
        heads.append(rows.view(3, b.num_heads, b.head_dim).sum(dim=(0, 2)))
        neurons.append(b.fc1.weight.detach().abs().sum(dim=1))
    return heads, neurons


def _masked_weights(struct: VitStructure, m_e: Masks) -> Dict[str, torch.Tensor]:
    """``{"<layer>.weight": w * m_e}`` for functional_call (the model is not touched)."""
    out = {}
    for name, lin in struct.linears().items():
        w = lin.weight.detach()
        out[f"{name}.weight"] = w * m_e[name].to(w.dtype) if name in m_e else w
    return out


def _batches(calib, device):
    n = 0
    for batch in calib:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise TypeError("calib must yield (images, labels) pairs")
        images, labels = batch[0], batch[1]
        n += 1
        yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
    if n == 0:
        raise ValueError("calib yielded no batches; give at least one (images, labels) batch")


class _EvalMode:
    """Eval mode for the duration of a with-block, restoring the previous mode after."""

    def __init__(self, model: nn.Module):
        self.model, self.was_training = model, model.training

    def __enter__(self):
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was_training)


def _activation(model, struct: VitStructure, m_e: Masks, calib, criterion: str):
    device = struct.blocks[0].qkv.weight.device
    acc = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    sums_h = [torch.zeros(b.num_heads, dtype=acc, device=device) for b in struct]
    sums_n = [torch.zeros(b.hidden, dtype=acc, device=device) for b in struct]
    counts = [0, 0]  # values averaged per head / per neuron (equal within a model's blocks)
    power = 1 if criterion == "l1" else 2
    handles = []

    def qkv_hook(i, b):
        def hook(_mod, _inp, out):
            # out: (B, N, 3*H*D) → per head over batch, tokens, q/k/v and head_dim
            x = out.detach().abs() if power == 1 else out.detach().pow(2)
            x = x.reshape(-1, 3, b.num_heads, b.head_dim)
            sums_h[i] += x.sum(dim=(0, 1, 3), dtype=acc)
            if i == 0:
                counts[0] += x.shape[0] * 3 * b.head_dim
        return hook

    def fc1_hook(i, b):
        def hook(_mod, _inp, out):
            x = out.detach().abs() if power == 1 else out.detach().pow(2)
            x = x.reshape(-1, b.hidden)
            sums_n[i] += x.sum(dim=0, dtype=acc)
            if i == 0:
                counts[1] += x.shape[0]
        return hook

    for i, b in enumerate(struct):
        handles.append(b.qkv.register_forward_hook(qkv_hook(i, b)))
        handles.append(b.fc1.register_forward_hook(fc1_hook(i, b)))
    try:
        params = _masked_weights(struct, m_e)
        with torch.no_grad(), _EvalMode(model):
            for images, _labels in _batches(calib, device):
                functional_call(model, params, (images,))
    finally:
        for h in handles:
            h.remove()
    heads = [s / counts[0] for s in sums_h]
    neurons = [s / counts[1] for s in sums_n]
    if power == 2:
        heads, neurons = [h.sqrt() for h in heads], [n.sqrt() for n in neurons]
    return heads, neurons


def _saliency(model, struct: VitStructure, m_e: Masks, calib, loss_fn):
    loss_fn = loss_fn or nn.functional.cross_entropy
    device = struct.blocks[0].qkv.weight.device
    params = {k: v.clone().requires_grad_(True) for k, v in _masked_weights(struct, m_e).items()}
    keys = list(params)
    grads = {k: torch.zeros_like(v) for k, v in params.items()}
    with _EvalMode(model):
        for images, labels in _batches(calib, device):
            loss = loss_fn(functional_call(model, params, (images,)), labels)
            for k, g in zip(keys, torch.autograd.grad(loss, [params[k] for k in keys])):
                grads[k] += g
    heads, neurons = [], []
    with torch.no_grad():
        for b in struct:
            q, p, f1, f2 = (f"{n}.weight" for n in b.names)
            wg = {k: params[k] * grads[k] for k in (q, p, f1, f2)}
            h = b.qkv_heads(wg[q]).sum(dim=(0, 2, 3)) + b.proj_heads(wg[p]).sum(dim=(0, 2))
            n = wg[f1].sum(dim=1) + wg[f2].sum(dim=0)
            heads.append(h.abs())
            neurons.append(n.abs())
    return heads, neurons


# --------------------------------------------------------------------------- applying
# Enforcement state lives in two places that survive copy.deepcopy / pickling of the model: the
# mask (a non-persistent buffer: not in state_dict, moves with .to(); 0/1 in the weight's dtype,
# because multiplying by a bool mask is several times slower on CPU) and a forward pre-hook.
# The per-weight gradient hooks and the registry of masked layers are process-side and are
# (re)made by that pre-hook for a layer they do not know yet — e.g. a deep copy's first forward.
_MASK = "_tuiprune_mask"
# id(weight) → (weakref to it, its gradient hook handle); tensors compare element-wise, so
# they cannot key a WeakKeyDictionary.
_GRAD_HOOKS: Dict[int, tuple] = {}
_MASKED: "weakref.WeakSet[nn.Linear]" = weakref.WeakSet()


def apply_masks(model: nn.Module, masks: Masks) -> None:
    """Zero the pruned weights and keep them exactly zero from now on.

    No parameter is renamed: ``model.state_dict()`` has the same keys as the dense model's.
    The mask lives in a non-persistent buffer of each Linear; a gradient hook zeroes the
    gradient of pruned weights (so optimizer state stays clean) and a global optimizer
    step-post hook re-applies the masks of the weights an ``optimizer.step()`` updated — SGD,
    AdamW with decoupled weight decay, momentum built before the cut — in any training loop.
    A deep copy or unpickled copy of a masked model enforces its masks from its first forward.
    Calling again replaces all masks; layers absent from ``masks`` become unmasked.
    """
    struct = describe(model)
    masks = _check_masks(struct, masks, "masks")
    for name, lin in struct.linears().items():
        mask = masks.get(name)
        if mask is None:
            _unmask(lin)
            continue
        w = lin.weight
        keep = (mask.to(w.device) != 0).to(w.dtype)
        lin.register_buffer(_MASK, keep, persistent=False)
        with torch.no_grad():
            w.mul_(keep)
        if _enforce not in lin._forward_pre_hooks.values():
            lin.register_forward_pre_hook(_enforce)
        _enforce(lin)


def remove_masks(model: nn.Module) -> None:
    """Forget all masks of ``model`` (weights keep their current values)."""
    for lin in describe(model).linears().values():
        _unmask(lin)


def current_masks(model: nn.Module) -> Optional[Masks]:
    """The masks in force (new bool tensors, True = keep), or None when the model is
    unmasked."""
    out = {name: getattr(lin, _MASK) != 0 for name, lin in describe(model).linears().items()
           if getattr(lin, _MASK, None) is not None}
    return out or None


def _enforce(lin: nn.Linear, _args=None) -> None:
    """Make sure this layer's weight has its gradient hook and the layer is registered."""
    w = lin.weight
    entry = _GRAD_HOOKS.get(id(w))
    if entry is None or entry[0]() is not w:
        key = id(w)
        ref = weakref.ref(w, lambda _ref: _GRAD_HOOKS.pop(key, None))
        _GRAD_HOOKS[key] = (ref, w.register_hook(_grad_hook(weakref.ref(lin))))
        _MASKED.add(lin)


def _unmask(lin: nn.Linear) -> None:
    entry = _GRAD_HOOKS.get(id(lin.weight))
    if entry is not None and entry[0]() is lin.weight:
        entry[1].remove()
        del _GRAD_HOOKS[id(lin.weight)]
    for key in [k for k, hook in lin._forward_pre_hooks.items() if hook is _enforce]:
        del lin._forward_pre_hooks[key]
    if _MASK in lin._buffers:
        del lin._buffers[_MASK]
    _MASKED.discard(lin)


def _grad_hook(lin_ref):
    def hook(grad):
        lin = lin_ref()
        mask = getattr(lin, _MASK, None) if lin is not None else None
        return grad if mask is None else grad * mask
    return hook


def _reapply_masks(optimizer, _args, _kwargs) -> None:
    """After any ``optimizer.step()``: re-zero the pruned weights that optimizer updates (one
    fused multiply; other models' masked weights are left alone)."""
    if not _MASKED:
        return
    stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}
    weights, masks = [], []
    for lin in list(_MASKED):
        mask = getattr(lin, _MASK, None)
        if mask is not None and id(lin.weight) in stepped:
            weights.append(lin.weight)
            masks.append(mask)
    if weights:
        with torch.no_grad():
            torch._foreach_mul_(weights, masks)


register_optimizer_step_post_hook(_reapply_masks)


# --------------------------------------------------------------------------- reporting
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
            lines.append(f"{r.block:>5}  {r.attn_sparsity:5.2f}  {r.heads_kept:>2}/{r.heads_total:<3}"
                         f"  {r.mlp_sparsity:5.2f}  {r.neurons_kept}/{r.neurons_total}")
        return "\n".join(lines)


@torch.no_grad()
def sparsity_report(model: nn.Module, masks: Optional[Masks] = None) -> SparsityReport:
    """Sparsity per block and overall, from ``masks``; without masks from the masks applied to
    the model, and for an unmasked model from its weights that are exactly zero.

    A head (neuron) counts as kept while any of its weights is kept.
    """
    struct = describe(model)
    if masks is None:
        masks = current_masks(model)
        if masks is None:
            masks = {n: lin.weight.detach() != 0 for n, lin in struct.linears().items()}
    masks = _check_masks(struct, masks, "masks")
    alive_h, alive_n = _mask_counts(struct, masks)
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
