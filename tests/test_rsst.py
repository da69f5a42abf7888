"""engine.rsst: the λ schedules and the regulariser that squeezes condemned structures."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from engine.pruning import apply_masks, current_masks
from engine.rsst import (SCHEDULES, RSSTRegularizer, lambda_at, late_ramp_share,
                         late_ramp_warning, ramp_length)
from helpers.pruning import batch, loop_masks, pruned_values, randomize

pytestmark = pytest.mark.usefixtures("one_thread")

BIG = 1e12  # a ceiling that never binds


def reference_lambdas(schedule, steps, g, k=4.0):
    """λ after each update, written the way docs/algorithm.md states the schedules."""
    out, lam, u = [], 0.0, 0.0
    for t in range(steps):
        if schedule == "x":
            lam += g
        elif schedule in ("x^2", "x^3", "exp"):
            u += g
            lam = {"x^2": u ** 2, "x^3": u ** 3, "exp": math.exp(u)}[schedule]
        elif schedule == "exp_custom":
            lam = g / (math.e - 1) * (math.exp((t + 1) / steps) - 1)
        else:
            lam = g / (math.e - 1) * (math.exp(((t + 1) / steps) ** k) - 1)
        out.append(lam)
    return out


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("g, steps", [(0.05, 20), (1e-3, 7), (0.3, 1)])
def test_schedule_values(schedule, g, steps):
    got = [lambda_at(schedule, t, steps, g, ceiling=BIG) for t in range(steps)]
    assert got == pytest.approx(reference_lambdas(schedule, steps, g), rel=1e-12)


@pytest.mark.parametrize("k", [1.0, 2.0, 4.0, 6.5])
def test_custom_exponents_value(k):
    got = [lambda_at("exp_custom_exponents", t, 10, 0.2, exponents=k, ceiling=BIG)
           for t in range(10)]
    assert got == pytest.approx(reference_lambdas("exp_custom_exponents", 10, 0.2, k), rel=1e-12)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_capped_at_the_ceiling(schedule):
    ceiling = 0.5
    g = {"exp": 0.01, "exp_custom": 2.0, "exp_custom_exponents": 2.0}.get(schedule, 0.4)
    lams = [lambda_at(schedule, t, 6, g, ceiling=ceiling) for t in range(12)]
    ref = reference_lambdas(schedule, 6, g)
    assert max(lams) == ceiling
    assert lams[:6] == pytest.approx([min(r, ceiling) for r in ref], rel=1e-12)
    assert lams[-1] == ceiling  # holds past the end of the ramp


@pytest.mark.parametrize("steps, g, k", [(1000, 1.0, 4.0), (37, 0.01, 4.0), (5, 2e-4, 2.0),
                                         (390, 0.5, 8.0)])
def test_exp_custom_exponents_reaches_granularity_monotonically(steps, g, k):
    lams = [lambda_at("exp_custom_exponents", t, steps, g, exponents=k) for t in range(steps)]
    assert lams[-1] == pytest.approx(g, rel=1e-12)
    assert lams[0] > 0
    assert all(a < b for a, b in zip(lams, lams[1:])), "must rise at every step"
    assert lambda_at("exp_custom_exponents", steps + 50, steps, g, exponents=k) == lams[-1]


def test_regularizer_steps_through_its_schedule_and_restarts(tiny_vit):
    model = tiny_vit()
    reg = RSSTRegularizer(model, loop_masks(model, {0: [1]}, {}), schedule="x^2",
                          reg_granularity=0.1, ramp_steps=5, reg_ceiling=BIG)
    assert reg.value == 0.0 and reg.steps_taken == 0
    seen = [reg.step() for _ in range(3)]
    assert seen == pytest.approx(reference_lambdas("x^2", 3, 0.1), rel=1e-12)
    assert reg.value == seen[-1] and reg.steps_taken == 3
    reg.restart_ramp()  # ramp = "epoch"
    assert reg.steps_taken == 0
    assert reg.step() == pytest.approx(0.01) and reg.value == pytest.approx(0.01)
    state = reg.state_dict()
    fresh = RSSTRegularizer(model, loop_masks(model, {0: [1]}, {}), schedule="x^2",
                            reg_granularity=0.1, ramp_steps=5, reg_ceiling=BIG)
    fresh.load_state_dict(state)
    assert (fresh.steps_taken, fresh.value) == (reg.steps_taken, reg.value)
    assert fresh.step() == reg.step()


def test_counts_what_it_squeezes(tiny_vit):
    model = tiny_vit()
    target = loop_masks(model, {0: [1], 2: [0, 3]}, {1: range(0, 256, 3)})
    reg = RSSTRegularizer(model, target)
    per_head, per_neuron = 3 * 16 * 64 + 64 * 16, 64 + 64
    assert (reg.heads, reg.neurons) == (3, 86)
    assert reg.regularized == 3 * per_head + 86 * per_neuron
    assert reg.regularized == sum(int((m == 0).sum()) for m in target.values())

    # a structure already cut (hard mask in force) is not counted again
    apply_masks(model, loop_masks(model, {0: [1]}, {1: range(0, 30, 3)}))
    reg = RSSTRegularizer(model, target)
    assert (reg.heads, reg.neurons) == (2, 76)
    assert reg.regularized == 2 * per_head + 76 * per_neuron
    explicit = RSSTRegularizer(model, target, current=current_masks(model))
    assert (explicit.heads, explicit.neurons, explicit.regularized) == (2, 76, reg.regularized)


def _zero_grad_loss(model, x):
    # a loss whose gradient is exactly zero: only the regulariser moves the weights
    return model(x).sum() * 0.0


def test_squeezed_weights_decay_and_the_others_are_untouched(tiny_vit):
    model = randomize(tiny_vit().train())
    target = loop_masks(model, {0: [1], 2: [0, 3]}, {1: range(0, 256, 3)})
    w0 = copy.deepcopy(model.state_dict())
    reg = RSSTRegularizer(model, target, schedule="x", reg_granularity=0.1, ramp_steps=50)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, _ = batch()
    factor, norms = 1.0, []
    for _ in range(8):
        opt.zero_grad()
        _zero_grad_loss(model, x).backward()
        lam = reg.step()
        opt.step()
        factor *= 1 - 0.5 * lam
        norms.append(float(pruned_values(model, target).norm()))
    assert all(a > b for a, b in zip(norms, norms[1:])), "squeezed weights must keep shrinking"
    sd = model.state_dict()
    for name, mask in target.items():
        w, before = sd[name + ".weight"], w0[name + ".weight"]
        assert torch.equal(w[mask != 0], before[mask != 0]), f"{name}: kept weights moved"
        assert torch.allclose(w[mask == 0], before[mask == 0] * factor, rtol=1e-5, atol=1e-7)
    others = [k for k in sd if k[:-len(".weight")] not in target]
    assert others and all(torch.equal(sd[k], w0[k]) for k in others)


def test_squeeze_beats_training_without_it(tiny_vit):
    """With a real loss: the same run without the regulariser leaves the condemned weights
    at their size; with it (exp_custom_exponents over the run) they go to ~0."""
    base = randomize(tiny_vit().train())
    target = loop_masks(base, {0: [1], 1: [2]}, {2: range(0, 256, 2)})
    start = float(pruned_values(base, target).norm())
    finals = {}
    for on in (False, True):
        model = copy.deepcopy(base)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        reg = RSSTRegularizer(model, target, reg_granularity=1.0, ramp_steps=30)
        for s in range(40):
            x, y = batch(s)
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            if on:
                reg.step()
            opt.step()
        finals[on] = float(pruned_values(model, target).norm())
    assert finals[False] > 0.5 * start
    assert finals[True] < 0.15 * start


SYNCS = ("item", "cpu", "numpy", "tolist", "__bool__", "__float__", "__int__", "__index__")


def test_no_host_sync_per_step(tiny_vit, monkeypatch):
    """The per-step path — backward with the mask gradient hooks, RSST step, optimizer step with
    the mask re-apply hook — never reads a tensor value on the host."""
    model = randomize(tiny_vit().train())
    apply_masks(model, loop_masks(model, {0: [1]}, {1: range(10)}))
    reg = RSSTRegularizer(model, loop_masks(model, {0: [1, 2]}, {1: range(40)}))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x, y = batch()
    loss = nn.functional.cross_entropy(model(x), y)
    calls = []

    def forbid(name):
        def raiser(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"host sync: Tensor.{name} called in the per-step path")
        return raiser

    for name in SYNCS:
        monkeypatch.setattr(torch.Tensor, name, forbid(name))
    loss.backward()
    reg.step()
    opt.step()
    monkeypatch.undo()
    assert calls == []
    assert bool((pruned_values(model, current_masks(model)) == 0).all())  # the hooks did run
    with pytest.raises(AssertionError):  # and the trap works
        monkeypatch.setattr(torch.Tensor, "item", forbid("item"))
        loss.detach().item()
    monkeypatch.undo()


def test_stability_warning(tiny_vit):
    model = tiny_vit()
    reg = RSSTRegularizer(model, loop_masks(model, {0: [1]}, {}), schedule="x",
                          reg_granularity=1.0, ramp_steps=1, reg_ceiling=BIG)
    reg.step()
    assert reg.value == 1.0
    assert reg.stability_warning(lr=0.1) is None
    msg = reg.stability_warning(lr=1.5)
    assert msg and "stability limit" in msg
    assert reg.stability_warning(lr=1.5, momentum=0.9) is None


def test_bad_arguments(tiny_vit):
    model = tiny_vit()
    target = loop_masks(model, {0: [1]}, {})
    with pytest.raises(ValueError, match="schedule must be one of") as err:
        RSSTRegularizer(model, target, schedule="linear")
    assert all(repr(s) in str(err.value) for s in SCHEDULES)
    with pytest.raises(ValueError, match="schedule must be one of"):
        lambda_at("cosine", 0, 10, 0.1)
    with pytest.raises(ValueError, match="reg_granularity"):
        RSSTRegularizer(model, target, reg_granularity=0.0)
    with pytest.raises(ValueError, match="reg_ceiling"):
        RSSTRegularizer(model, target, reg_ceiling=-1.0)
    with pytest.raises(ValueError, match="ramp_steps"):
        RSSTRegularizer(model, target, ramp_steps=0)
    with pytest.raises(ValueError, match=r"target\['blocks.0.mlp.fc1'\] has shape"):
        RSSTRegularizer(model, {"blocks.0.mlp.fc1": torch.ones(3, 3)})
    with pytest.raises(ValueError, match="target has a mask for 'head'"):
        RSSTRegularizer(model, {"head": torch.ones(10, 64)})
    with pytest.raises(ValueError, match=r"current\['blocks.0.attn.qkv'\] has shape"):
        RSSTRegularizer(model, target, current={"blocks.0.attn.qkv": torch.ones(2, 2)})


@pytest.mark.parametrize("arg", ["exponents", "reg_granularity", "reg_ceiling"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0.0, -1.0])
def test_lambda_parameters_must_be_finite_and_positive(tiny_vit, arg, value):
    model = tiny_vit()
    target = loop_masks(model, {0: [1]}, {})
    with pytest.raises(ValueError, match=rf"{arg} must be a finite number > 0, got {value}"):
        RSSTRegularizer(model, target, **{arg: value})
    with pytest.raises(ValueError, match=rf"{arg} must be a finite number > 0"):
        late_ramp_share([0.1] * 10, 10, **{arg: value})


@pytest.mark.parametrize("value", ["4", None, True])
def test_exponents_must_be_a_number(tiny_vit, value):
    model = tiny_vit()
    with pytest.raises(TypeError, match="exponents must be a finite number > 0"):
        RSSTRegularizer(model, loop_masks(model, {0: [1]}, {}), exponents=value)


# --------------------------------------------------------------------------- λ ramp vs lr
def demo_like_lrs(steps_per_epoch=28, epochs=2, warmup=14, peak=0.002):
    """Linear warm-up then cosine to 0, written out: the demo's 56-step RSST state."""
    total = steps_per_epoch * epochs
    out = []
    for i in range(total):
        if i < warmup:
            out.append(peak * (i + 1) / warmup)
        else:
            out.append(peak * 0.5 * (1 + math.cos(math.pi * (i - warmup) / (total - warmup))))
    return out


def custom_lambda(u, T, k, g=1.0):
    """exp_custom_exponents at ramp position u = t + 1 of T (k = 1: exp_custom)."""
    return g / (math.e - 1) * (math.exp((u / T) ** k) - 1)


def test_late_ramp_share_of_the_demo_like_state():
    lrs = demo_like_lrs()
    # cosine below 10 % of its peak: 0.5 (1 + cos(pi p)) < 0.1  ⇔  p > acos(-0.8) / pi
    p_late = math.acos(-0.8) / math.pi
    entry = 14 + math.floor(p_late * 42) + 1  # first step with progress (i - 14) / 42 > p_late
    assert lrs[entry] < 0.1 * 0.002 <= lrs[entry - 1]
    # a ramp that only rises: the late share is what λ still has to gain when the lr is low
    want_k4 = 1 - custom_lambda(entry, 56, 4) / custom_lambda(56, 56, 4)
    want_k1 = 1 - custom_lambda(entry, 56, 1) / custom_lambda(56, 56, 1)
    got_k4 = late_ramp_share(lrs, 56, schedule="exp_custom_exponents", exponents=4)
    got_k1 = late_ramp_share(lrs, 56, schedule="exp_custom")
    assert got_k4 == pytest.approx(want_k4, rel=1e-9)
    assert got_k1 == pytest.approx(want_k1, rel=1e-9)
    assert got_k4 > 0.5 > got_k1  # k = 4 rises late; exp_custom is quieter

    # ramp = "epoch": two equal rises of g, only the second epoch's tail is late
    want_epoch = (1 - custom_lambda(entry - 28, 28, 4)) / 2
    assert late_ramp_share(lrs, 28, exponents=4) == pytest.approx(want_epoch, rel=1e-9)

    msg = late_ramp_warning(lrs, 56, schedule="exp_custom_exponents", exponents=4,
                            steps_per_epoch=28)
    assert msg is not None
    assert f"{want_k4:.0%} of its rise" in msg and f"the {56 - entry} of the state's 56" in msg
    assert f'rsst.schedule = "exp_custom" (puts {want_k1:.0%} there)' in msg
    assert f'rsst.ramp = "epoch" (puts {want_epoch:.0%} there)' in msg
    assert late_ramp_warning(lrs, 56, schedule="exp_custom") is None


def test_late_ramp_share_takes_a_callable_and_a_constant_lr_is_never_late():
    lrs = demo_like_lrs()
    assert late_ramp_share(lambda i: lrs[i], 56, steps=56) == late_ramp_share(lrs, 56)
    assert late_ramp_share([0.01] * 40, 40) == 0.0
    assert late_ramp_warning([0.01] * 40, 40) is None
    # warm-up steps below 10 % of the peak come before it: not late
    assert late_ramp_share([0.0001, 0.001, 0.01, 0.01], 4, schedule="x", reg_granularity=0.25) == 0


def test_late_ramp_share_bad_input():
    with pytest.raises(ValueError, match="lrs must hold the learning rate of at least one step"):
        late_ramp_share([], 10)
    with pytest.raises(ValueError, match="lrs must be finite learning rates >= 0"):
        late_ramp_share([0.1, float("nan")], 10)
    with pytest.raises(TypeError, match="steps is required"):
        late_ramp_share(lambda i: 0.1, 10)
    with pytest.raises(ValueError, match="ramp_steps must be >= 1"):
        late_ramp_share([0.1], 0)


def test_ramp_length():
    assert ramp_length("epoch", 28, 2) == 28
    assert ramp_length("state", 28, 2) == 56
    with pytest.raises(ValueError, match="ramp must be one of 'state', 'epoch'"):
        ramp_length("batch", 28, 2)
