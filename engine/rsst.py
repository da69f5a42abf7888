"""RSST: squeeze the structures a pruning step condemned toward zero before cutting them
(docs/algorithm.md, "RSST").

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
import numbers
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from engine.pruning import Masks, check_choice, check_count, check_masks, current_masks, mask_counts
from engine.structure import vit_structure

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
    check_choice(schedule, "schedule", SCHEDULES)
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


def check_lambda_params(schedule: str, reg_granularity, exponents,
                        reg_ceiling) -> Tuple[float, float, float]:
    """Validate a λ schedule's parameters: ``(reg_granularity, exponents, reg_ceiling)`` as
    floats, or a ``ValueError``/``TypeError`` naming the argument (each must be a finite
    number > 0)."""
    check_choice(schedule, "schedule", SCHEDULES)
    out = []
    for name, value in (("reg_granularity", reg_granularity), ("exponents", exponents),
                        ("reg_ceiling", reg_ceiling)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a finite number > 0, got {type(value).__name__} "
                            f"{value!r}")
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value}")
        out.append(float(value))
    return out[0], out[1], out[2]


def ramp_length(ramp: str, steps_per_epoch: int, epochs: int) -> int:
    """Optimizer steps in one λ ramp: an epoch (``"epoch"``) or the whole state (``"state"``)."""
    check_choice(ramp, "ramp", RAMPS)
    return steps_per_epoch if ramp == "epoch" else steps_per_epoch * epochs


def squeeze_counts(model: nn.Module, target: Masks,
                   current: Optional[Masks] = None) -> Tuple[int, int, int]:
    """(weights, heads, neurons) alive now (``current``, default: the masks in force) that
    ``target`` removes: what an RSST state squeezes."""
    struct = vit_structure(model)
    target = check_masks(struct, target, "target")
    current = check_masks(struct, current if current is not None
                          else (current_masks(model) or {}), "current")
    return _squeeze_counts(struct, target, current)


def _squeeze_counts(struct, target: Masks, current: Masks) -> Tuple[int, int, int]:
    weights = sum(_doomed(target, current, name) for name in target)
    h_now, n_now = mask_counts(struct, current)
    h_tgt, n_tgt = mask_counts(struct, target)
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
        struct = vit_structure(model)
        target = check_masks(struct, target, "target")
        self.granularity, self.exponents, self.ceiling = check_lambda_params(
            schedule, reg_granularity, exponents, reg_ceiling)
        self.schedule = schedule
        self.ramp_steps = check_count(ramp_steps, "ramp_steps")
        current = check_masks(struct, current if current is not None
                              else (current_masks(model) or {}), "current")
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


# --------------------------------------------------------------------------- λ ramp vs lr
LATE_LR_FRACTION = 0.1  # "late": after the learning rate's peak, below this share of it
LATE_RAMP_WARN_SHARE = 0.5  # warn when more than this share of the λ rise comes late

LearningRates = Union[Sequence[float], Callable[[int], float]]


def late_ramp_share(lrs: LearningRates, ramp_steps: int, *,
                    schedule: str = "exp_custom_exponents", reg_granularity: float = 1.0,
                    exponents: float = 4.0, reg_ceiling: float = 1.0,
                    steps: Optional[int] = None) -> float:
    """The share (0..1) of the λ ramp's rise that falls at *late* steps of an RSST state.

    ``lrs`` is the learning rate at every optimizer step of the state (a sequence, or a
    callable ``lr(step)`` with ``steps`` given); the λ ramp restarts every ``ramp_steps``
    steps (``ramp_length``). A step is late when it comes at or after the first step with the
    peak learning rate and its learning rate is below ``LATE_LR_FRACTION`` (10 %) of that
    peak. The rise is the sum of λ's step-to-step increases within each ramp, from 0 before
    the ramp's first step (with ``ramp = "epoch"`` every epoch's ramp rises again); the share
    is the part of that sum made at late steps. There the squeeze (``lr · λ · w`` per step)
    barely moves the weights, so a ramp that rises late leaves the condemned weights large
    for the hard cut.
    """
    lr = _learning_rates(lrs, steps)
    g, k, ceiling = check_lambda_params(schedule, reg_granularity, exponents, reg_ceiling)
    ramp_steps = check_count(ramp_steps, "ramp_steps")
    late = late_steps(lr)
    rise = late_rise = lam = 0.0
    for i in range(len(lr)):
        t = i % ramp_steps
        previous = 0.0 if t == 0 else lam
        lam = lambda_at(schedule, t, ramp_steps, g, k, ceiling)
        increase = max(lam - previous, 0.0)
        rise += increase
        if late[i]:
            late_rise += increase
    return late_rise / rise if rise > 0 else 0.0


def late_steps(lrs: LearningRates, steps: Optional[int] = None) -> List[bool]:
    """Per step: at or after the first step with the peak learning rate, and below
    ``LATE_LR_FRACTION`` of that peak."""
    lr = _learning_rates(lrs, steps)
    peak = max(lr)
    start = lr.index(peak)
    return [i >= start and rate < LATE_LR_FRACTION * peak for i, rate in enumerate(lr)]


def late_ramp_warning(lrs: LearningRates, ramp_steps: int, *,
                      schedule: str = "exp_custom_exponents", reg_granularity: float = 1.0,
                      exponents: float = 4.0, reg_ceiling: float = 1.0,
                      steps: Optional[int] = None, steps_per_epoch: Optional[int] = None,
                      threshold: float = LATE_RAMP_WARN_SHARE) -> Optional[str]:
    """A warning when more than ``threshold`` of the λ ramp's rise comes late
    (:func:`late_ramp_share`), saying what to change; else None. Given ``steps_per_epoch``
    and a ramp over more than one epoch, it also says what ``rsst.ramp = "epoch"`` would
    give."""
    lr = _learning_rates(lrs, steps)
    params = dict(reg_granularity=reg_granularity, exponents=exponents, reg_ceiling=reg_ceiling)
    share = late_ramp_share(lr, ramp_steps, schedule=schedule, **params)
    if share <= threshold:
        return None
    late = sum(late_steps(lr))
    shape = f"{schedule}, k = {exponents:g}" if schedule == "exp_custom_exponents" else schedule
    fixes = []
    if schedule == "exp_custom_exponents":
        alt = late_ramp_share(lr, ramp_steps, schedule="exp_custom", **params)
        fixes.append(f'rsst.schedule = "exp_custom" (puts {alt:.0%} there) or a smaller '
                     f"rsst.exponents")
    if steps_per_epoch and ramp_steps > steps_per_epoch:
        alt = late_ramp_share(lr, steps_per_epoch, schedule=schedule, **params)
        fixes.append(f'rsst.ramp = "epoch" (puts {alt:.0%} there)')
    fixes.append(f"a learning rate that stays above {LATE_LR_FRACTION:.0%} of its peak "
                 f'(e.g. train.schedule = "constant")')
    return (f"RSST λ ramp: {share:.0%} of its rise ({shape}) falls in the {late} of the state's "
            f"{len(lr)} steps where the learning rate is below {LATE_LR_FRACTION:.0%} of its "
            f"peak: the squeeze barely moves the weights there, so the hard cut at the end of "
            f"the state will cost accuracy. To ramp earlier: {'; or '.join(fixes)}.")


def _learning_rates(lrs: LearningRates, steps: Optional[int]) -> List[float]:
    if callable(lrs):
        if steps is None:
            raise TypeError("steps is required when lrs is a callable lr(step)")
        lrs = [lrs(i) for i in range(check_count(steps, "steps"))]
    out = [float(x) for x in lrs]
    if not out:
        raise ValueError("lrs must hold the learning rate of at least one step")
    if not all(math.isfinite(x) and x >= 0 for x in out):
        raise ValueError("lrs must be finite learning rates >= 0")
    return out
