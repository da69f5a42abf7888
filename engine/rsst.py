"""RSST: squeeze the structures a pruning step condemned toward zero before cutting them.

During the state after a pruning step, every optimizer step adds ``λ·w`` to the gradient of each
still-alive weight outside the target mask ``M_s``; λ grows along a schedule; at the end of the
state the caller applies ``M_s`` as a hard mask (``engine.transitions.hard_cut``).

Differences from the research code, on purpose: λ is updated on *every* step (its gate let λ move
only at batch 0 of each epoch, so it stayed near 1e-10), the ramp spans the whole state by
default (``ramp="epoch"`` restarts it every epoch, as the research code did), and every weight of
a condemned structure is squeezed (not only those the element-wise mask kept).
"""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
from torch import nn

from engine.pruning import Masks, _check_masks, _mask_counts, current_masks
from engine.structure import describe

SCHEDULES = ("x", "x^2", "x^3", "exp", "exp_custom", "exp_custom_exponents")
RAMPS = ("state", "epoch")
_E_1 = math.expm1(1.0)  # e - 1


def lambda_at(schedule: str, t: int, steps: int, granularity: float, exponents: float = 4.0,
              ceiling: float = 1.0) -> float:
    """λ at step ``t`` (0-based) of a ramp of ``steps`` steps, capped at ``ceiling``.

    ``x``: λ = g·(t+1); ``x^2``/``x^3``: λ = (g·(t+1))²/³; ``exp``: λ = e^{g·(t+1)};
    ``exp_custom``: λ = g/(e−1)·(e^{(t+1)/T} − 1);
    ``exp_custom_exponents``: λ = g/(e−1)·(e^{((t+1)/T)^k} − 1).
    The two ``exp_custom`` schedules reach exactly ``g`` at the last step of the ramp; past
    the end of the ramp λ holds its final value.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(map(repr, SCHEDULES))}; "
                         f"got {schedule!r}")
    steps = max(1, int(steps))
    u = min(t, steps - 1) + 1
    if schedule == "x":
        lam = granularity * u
    elif schedule == "x^2":
        lam = (granularity * u) ** 2
    elif schedule == "x^3":
        lam = (granularity * u) ** 3
    elif schedule == "exp":
        lam = math.exp(min(granularity * u, 700.0))
    elif schedule == "exp_custom":
        lam = granularity / _E_1 * math.expm1(u / steps)
    else:  # expm1: e^x - 1 rounds to 0 for the tiny x of early steps with a large k
        lam = granularity / _E_1 * math.expm1((u / steps) ** exponents)
    return min(lam, ceiling)


def squeeze_counts(model: nn.Module, target: Masks,
                   current: Optional[Masks] = None) -> Tuple[int, int, int]:
    """(weights, heads, neurons) alive now (``current``, default: the masks in force) that
    ``target`` removes: what an RSST state squeezes."""
    struct = describe(model)
    target = _check_masks(struct, target, "target")
    current = _check_masks(struct, current if current is not None
                           else (current_masks(model) or {}), "current")
    return _squeeze_counts(struct, target, current)


def _squeeze_counts(struct, target: Masks, current: Masks) -> Tuple[int, int, int]:
    weights = sum(_doomed(target, current, name) for name in target)
    h_now, n_now = _mask_counts(struct, current)
    h_tgt, n_tgt = _mask_counts(struct, target)
    heads = sum(int(((a > 0) & (b == 0)).sum()) for a, b in zip(h_now, h_tgt))
    neurons = sum(int(((a > 0) & (b == 0)).sum()) for a, b in zip(n_now, n_tgt))
    return weights, heads, neurons


def _doomed(target: Masks, current: Masks, name: str) -> int:
    """Weights of layer ``name`` alive now that ``target`` removes."""
    doomed = target[name] == 0
    if name in current:
        doomed = doomed & (current[name] != 0)
    return int(doomed.sum())


class RSSTRegularizer:
    """Adds ``λ·w`` to the gradients of the weights a target mask will remove.

    Call :meth:`step` after every ``backward()`` and before ``optimizer.step()`` (with fp16
    loss scaling, after ``scaler.unscale_(optimizer)``). It never synchronises with the device:
    λ is computed on the host from the step count.

    Attributes for reporting: ``value`` (λ used by the last step; 0 before the first),
    ``steps_taken`` (steps since the ramp (re)started), ``regularized`` (weights squeezed),
    ``heads`` and ``neurons`` (structures squeezed).
    """

    def __init__(self, model: nn.Module, target: Masks, *, current: Optional[Masks] = None,
                 schedule: str = "exp_custom_exponents", reg_granularity: float = 1.0,
                 exponents: float = 4.0, ramp_steps: int = 1000, reg_ceiling: float = 1.0):
        struct = describe(model)
        target = _check_masks(struct, target, "target")
        lambda_at(schedule, 0, 1, reg_granularity, exponents, reg_ceiling)  # validates schedule
        if not (reg_granularity > 0 and reg_ceiling > 0):
            raise ValueError("reg_granularity and reg_ceiling must be > 0, got "
                             f"{reg_granularity} and {reg_ceiling}")
        if int(ramp_steps) < 1:
            raise ValueError(f"ramp_steps must be >= 1, got {ramp_steps}")
        current = _check_masks(struct, current if current is not None
                               else (current_masks(model) or {}), "current")
        self.schedule, self.granularity = schedule, float(reg_granularity)
        self.exponents, self.ceiling = float(exponents), float(reg_ceiling)
        self.ramp_steps = int(ramp_steps)
        self.steps_taken = 0
        self.value = 0.0

        # Pruned weights are exactly 0, so squeezing "alive and not in target" is the same as
        # squeezing "not in target": λ·0 adds nothing. That lets the squeeze mask stay a
        # broadcast view of the structured target instead of a dense copy.
        self._weights: List[torch.Tensor] = []
        self._squeeze: List[torch.Tensor] = []
        for name, lin in struct.linears().items():
            if name in target and _doomed(target, current, name) > 0:
                w = lin.weight
                self._weights.append(w)
                self._squeeze.append(1.0 - target[name].to(device=w.device, dtype=w.dtype))
        self.regularized, self.heads, self.neurons = _squeeze_counts(struct, target, current)

    def lambda_at(self, t: int) -> float:
        """λ this regulariser uses at ramp step ``t``."""
        return lambda_at(self.schedule, t, self.ramp_steps, self.granularity, self.exponents,
                         self.ceiling)

    @torch.no_grad()
    def step(self) -> float:
        """Add λ·w to the gradients of the squeezed weights; advance the ramp; return λ."""
        lam = self.lambda_at(self.steps_taken)
        pairs = [(w.grad, w, s) for w, s in zip(self._weights, self._squeeze)
                 if w.grad is not None]
        if pairs:
            grads, weights, squeeze = zip(*pairs)
            torch._foreach_addcmul_(list(grads), list(weights), list(squeeze), value=lam)
        self.value = lam
        self.steps_taken += 1
        return lam

    def restart_ramp(self) -> None:
        """Start the ramp again (``ramp = "epoch"``)."""
        self.steps_taken = 0

    def stability_warning(self, lr: float, momentum: float = 0.0) -> Optional[str]:
        """A message when λ·lr nears SGD's stability limit 2(1+momentum) for the squeeze term
        (above half of it), else None."""
        limit = 2.0 * (1.0 + momentum)
        if self.value * lr > 0.5 * limit:
            return (f"RSST λ·lr = {self.value * lr:.3g} is near SGD's stability limit "
                    f"({limit:.3g}): the squeezed weights will oscillate; lower reg_ceiling or "
                    f"reg_granularity, or use the exp_custom_exponents schedule")
        return None

    def state_dict(self) -> dict:
        return {"steps_taken": self.steps_taken, "value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.steps_taken = int(state["steps_taken"])
        self.value = float(state["value"])
