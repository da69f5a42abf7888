"""Pruning masks: what they are, checking them against a model, and keeping them in force.

A mask set (``Masks``) maps a prunable Linear's module name (``"blocks.3.attn.qkv"``) to a tensor
shaped like its weight: nonzero = keep, 0 = pruned. :func:`apply_masks` puts a mask set in force
so that pruned weights are exactly 0 at every forward and after every optimizer step, without
renaming any parameter (docs/algorithm.md, "Keeping pruned weights at zero").

How the masks stay in force, per masked Linear:

- the mask, 0/1 in the weight's dtype, in a non-persistent buffer (not in ``state_dict``; moves
  with ``.to()``; survives ``copy.deepcopy`` and pickling);
- a reference to the Linear's own weight Parameter in the module's ``__dict__``: copies keep it
  pointing at *their* Parameter (deepcopy and pickle preserve shared references), and it is
  how the hooks tell the module's weight from a tensor that ``torch.func.functional_call``
  substituted for it, which they never touch;
- a forward pre-hook that gives that Parameter its gradient hook the first time it is needed
  (a copy's first forward; a frozen weight once it requires grad again);
- a load-state-dict post-hook that re-zeroes the pruned weights after ``load_state_dict``;
- a global optimizer step-post hook that re-applies the masks of the weights a step updated.
"""

from __future__ import annotations

import weakref
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from engine.structure import VitStructure, vit_structure

Masks = Dict[str, torch.Tensor]

_MASK = "_tuiprune_mask"      # buffer: the mask in force, 0/1 in the weight's dtype
_WEIGHT = "_tuiprune_weight"  # __dict__ entry: the Linear's own weight Parameter
# id(weight) → (weakref to it, its gradient hook handle); tensors compare element-wise, so they
# cannot key a WeakKeyDictionary.
_GRAD_HOOKS: Dict[int, tuple] = {}
_MASKED: "weakref.WeakSet[nn.Linear]" = weakref.WeakSet()


# --------------------------------------------------------------------------- checking
def check_masks(struct: VitStructure, masks, name: str) -> Masks:
    """Validate a mask dict against the model (known layer names, weight-shaped tensors) and
    return it as a plain dict; ``None`` is an empty dict. Errors name the argument ``name``."""
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


def keep_floats(mask: torch.Tensor) -> torch.Tensor:
    """A mask as 0/1 floats: float masks are taken as they are (their values are 0/1), other
    dtypes are compared with 0."""
    return mask if mask.is_floating_point() else (mask != 0).float()


def mask_counts(struct: VitStructure, masks: Masks, *, incoming_only: bool = False
                ) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """Per block, the weights ``masks`` keeps of each head and of each neuron (float tensors;
    a layer without a mask keeps all). Whole structures by default (a head's qkv rows and proj
    columns, a neuron's fc1 row and fc2 column); ``incoming_only`` counts a head's qkv rows
    and a neuron's fc1 row only."""
    heads, neurons = [], []
    for b in struct:
        mq, mp, m1, m2 = (masks.get(n) for n in b.names)
        dev = b.qkv.weight.device
        # Reduce along the contiguous dim first, then fold rows/columns into heads: strided
        # multi-dim reductions over the (3, H, D, C) view are several times slower.
        h = (keep_floats(mq).sum(dim=1).view(3, b.num_heads, b.head_dim).sum(dim=(0, 2))
             if mq is not None
             else torch.full((b.num_heads,), float(b.incoming_per_head), device=dev))
        n = (keep_floats(m1).sum(dim=1) if m1 is not None
             else torch.full((b.hidden,), float(b.incoming_per_neuron), device=dev))
        if not incoming_only:
            h = h + (keep_floats(mp).sum(dim=0).view(b.num_heads, b.head_dim).sum(dim=1)
                     if mp is not None else float(b.proj.weight.shape[0] * b.head_dim))
            n = n + (keep_floats(m2).sum(dim=0) if m2 is not None
                     else float(b.fc2.weight.shape[0]))
        heads.append(h)
        neurons.append(n)
    return heads, neurons


# --------------------------------------------------------------------------- applying
def apply_masks(model: nn.Module, masks: Masks) -> None:
    """Zero the pruned weights and keep them exactly zero from now on.

    No parameter is renamed: ``model.state_dict()`` has the same keys as the dense model's. A
    gradient hook zeroes the gradient of pruned weights (so optimizer state stays clean), a
    global optimizer step-post hook re-applies the masks of the weights an
    ``optimizer.step()`` updated — SGD, AdamW with decoupled weight decay, momentum built before
    the cut — in any training loop, and ``load_state_dict`` re-applies them after loading.
    Frozen weights (``requires_grad=False``), deep and unpickled copies, and
    ``torch.func.functional_call`` with substituted weights all work. Calling again replaces
    all masks; layers absent from ``masks`` become unmasked (``remove_masks`` removes all).
    Replace a masked layer's weight Parameter by hand only through ``load_state_dict``, or call
    ``apply_masks`` again after.
    """
    struct = vit_structure(model)
    if masks is None:
        raise TypeError("masks must be a dict of module name → tensor, got None; to remove "
                        "every mask call remove_masks(model)")
    masks = check_masks(struct, masks, "masks")
    for name, lin in struct.linears().items():
        mask = masks.get(name)
        if mask is None:
            _unmask(lin)
            continue
        w = lin.weight
        keep = (mask.to(w.device) != 0).to(w.dtype)
        lin.register_buffer(_MASK, keep, persistent=False)
        if _WEIGHT in lin.__dict__ and lin.__dict__[_WEIGHT] is not w:
            _drop_grad_hook(lin.__dict__[_WEIGHT])
        lin.__dict__[_WEIGHT] = w  # not setattr: that would register a second parameter
        with torch.no_grad():
            w.mul_(keep)
        if _enforce not in lin._forward_pre_hooks.values():
            lin.register_forward_pre_hook(_enforce)
        if _after_load not in lin._load_state_dict_post_hooks.values():
            lin.register_load_state_dict_post_hook(_after_load)
        _enforce(lin)


def remove_masks(model: nn.Module) -> None:
    """Forget all masks of ``model`` (weights keep their current values)."""
    for lin in vit_structure(model).linears().values():
        _unmask(lin)


def current_masks(model: nn.Module) -> Optional[Masks]:
    """The masks in force (new bool tensors, True = keep), or None when the model is
    unmasked."""
    out = {name: getattr(lin, _MASK) != 0
           for name, lin in vit_structure(model).linears().items()
           if getattr(lin, _MASK, None) is not None}
    return out or None


@torch.no_grad()
def reapply_masks(model: nn.Module) -> None:
    """Zero the pruned weights again, e.g. after writing weights in place by hand."""
    for lin in vit_structure(model).linears().values():
        mask = getattr(lin, _MASK, None)
        if mask is not None:
            lin.weight.mul_(mask)


def _enforce(lin: nn.Linear, _args=None) -> None:
    """Forward pre-hook: give the layer's own weight its gradient hook if it needs one.

    Looks only at the Parameter recorded by ``apply_masks`` (or carried over by a copy), never
    at ``lin.weight`` as it is during the call: under ``functional_call`` that is the caller's
    tensor, which may be detached, frozen or not a leaf."""
    own = lin.__dict__.get(_WEIGHT)
    if own is None:
        return
    entry = _GRAD_HOOKS.get(id(own))
    if entry is not None and entry[0]() is own:
        return
    _MASKED.add(lin)
    if own.requires_grad:  # a frozen weight gets no gradient; it is hooked once it needs one
        key = id(own)

        def forget(ref, key=key):
            if _GRAD_HOOKS.get(key, (None,))[0] is ref:
                del _GRAD_HOOKS[key]

        _GRAD_HOOKS[key] = (weakref.ref(own, forget), own.register_hook(_MaskGrad(lin)))


def _after_load(lin: nn.Linear, _incompatible_keys) -> None:
    """Load-state-dict post-hook: the loaded weights are dense; zero the pruned ones. With
    ``assign=True`` the layer has a new weight Parameter: adopt it."""
    w = lin._parameters.get("weight")
    mask = getattr(lin, _MASK, None)
    if mask is None or not isinstance(w, nn.Parameter):
        return
    if lin.__dict__.get(_WEIGHT) is not w:
        _drop_grad_hook(lin.__dict__.get(_WEIGHT))
        lin.__dict__[_WEIGHT] = w
        if mask.device != w.device or mask.dtype != w.dtype:
            lin.register_buffer(_MASK, mask.to(device=w.device, dtype=w.dtype),
                                persistent=False)
        _enforce(lin)
    with torch.no_grad():
        w.mul_(getattr(lin, _MASK))


def _drop_grad_hook(weight: Optional[torch.Tensor]) -> None:
    entry = _GRAD_HOOKS.get(id(weight)) if weight is not None else None
    if entry is not None and entry[0]() is weight:
        entry[1].remove()
        del _GRAD_HOOKS[id(weight)]


def _unmask(lin: nn.Linear) -> None:
    _drop_grad_hook(lin.__dict__.pop(_WEIGHT, None))
    for hooks, fn in ((lin._forward_pre_hooks, _enforce),
                      (lin._load_state_dict_post_hooks, _after_load)):
        for key in [k for k, hook in hooks.items() if hook is fn]:
            del hooks[key]
    if _MASK in lin._buffers:
        del lin._buffers[_MASK]
    _MASKED.discard(lin)


class _MaskGrad:
    """Gradient hook of a masked weight: the gradient times the layer's current mask."""

    def __init__(self, lin: nn.Linear):
        self.lin_ref = weakref.ref(lin)

    def __call__(self, grad: torch.Tensor) -> torch.Tensor:
        lin = self.lin_ref()
        mask = getattr(lin, _MASK, None) if lin is not None else None
        return grad if mask is None else grad * mask


def _reapply_after_step(optimizer, _args, _kwargs) -> None:
    """After any ``optimizer.step()``: re-zero the pruned weights that optimizer updates (one
    fused multiply; other models' masked weights are left alone)."""
    if not _MASKED:
        return
    stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}
    weights, masks = [], []
    for lin in list(_MASKED):
        mask = getattr(lin, _MASK, None)
        own = lin.__dict__.get(_WEIGHT)
        if mask is not None and own is not None and id(own) in stepped:
            weights.append(own)
            masks.append(mask)
    if weights:
        with torch.no_grad():
            torch._foreach_mul_(weights, masks)


register_optimizer_step_post_hook(_reapply_after_step)

# The code that runs at every training step (for audits such as bench/bench_engine.py's scan
# for host synchronisation).
PER_STEP_CODE = (_enforce, _MaskGrad, _reapply_after_step)
