"""engine.pruning.masks: putting masks in force and keeping pruned weights exactly 0 — through
optimizer steps, copies, frozen weights, functional_call and load_state_dict."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn
from torch.func import functional_call

from engine.pruning import (apply_masks, current_masks, elementwise_masks, remove_masks,
                            sparsity_report, structured_masks)
from helpers.pruning import (batch, head_masks, kept_values, loop_masks, pruned_values,
                             randomize, train_step, zeros_of)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_state_dict_keys_and_parameters_unchanged(tiny_vit):
    model = tiny_vit()
    keys = list(model.state_dict())
    params = dict(model.named_parameters())
    masks = structured_masks(model, elementwise_masks(model, 0.3), 0.5, 0.5)
    apply_masks(model, masks)
    assert list(model.state_dict()) == keys
    assert not [k for k in model.state_dict() if "orig" in k or "mask" in k]
    assert dict(model.named_parameters()).keys() == params.keys()
    assert all(p is params[n] for n, p in model.named_parameters())  # same objects
    fresh = tiny_vit(seed=9)
    fresh.load_state_dict(model.state_dict(), strict=True)
    x, _ = batch()
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


def test_apply_zeroes_exactly_the_pruned_weights(tiny_vit):
    model = tiny_vit()
    before = copy.deepcopy(model)
    masks = head_masks(model)
    apply_masks(model, masks)
    assert bool((pruned_values(model, masks) == 0).all())
    assert torch.equal(kept_values(model, masks), kept_values(before, masks))
    assert set(current_masks(model)) == set(masks)
    assert all(torch.equal(current_masks(model)[n], masks[n] != 0) for n in masks)


OPTIMIZERS = {
    "sgd-momentum-wd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.05),
    "sgd-nesterov-loop": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True,
                                                   weight_decay=0.05, foreach=False),
    "adamw-wd": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
    "adamw-wd-loop": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1, foreach=False),
    "adam-l2": lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=0.1),
}


@pytest.mark.parametrize("make_opt", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_pruned_weights_stay_zero_through_optimizer_steps(tiny_vit, make_opt):
    model = tiny_vit().train()
    opt = make_opt(model.parameters())
    for s in range(3):  # momentum / Adam moments built BEFORE the cut
        train_step(model, opt, seed=s)
    masks = head_masks(model)
    apply_masks(model, masks)
    cut = kept_values(model, masks).clone()
    for s in range(3, 7):
        train_step(model, opt, seed=s)
        assert bool((pruned_values(model, masks) == 0).all()), f"step {s}"
    assert not torch.equal(kept_values(model, masks), cut), "the kept weights must train"


class SignMomentum(torch.optim.Optimizer):
    """A user's own optimizer: sign of a momentum buffer (moves zero-gradient weights)."""

    def __init__(self, params, lr=1e-2):
        super().__init__(params, dict(lr=lr))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                buf = self.state[p].setdefault("buf", torch.zeros_like(p))
                buf.mul_(0.9).add_(p.grad)
                p.add_(buf.sign(), alpha=-group["lr"])


def test_pruned_weights_stay_zero_in_a_users_own_loop(tiny_vit):
    model = tiny_vit().train()
    opt = SignMomentum(model.parameters())
    for s in range(2):
        train_step(model, opt, seed=s)
    masks = head_masks(model)
    apply_masks(model, masks)
    for s in range(2, 5):
        train_step(model, opt, seed=s)
        assert bool((pruned_values(model, masks) == 0).all())
    # a hand-written update with weight decay and gradient clipping, no torch.optim at all
    for s in range(5, 8):
        x, y = batch(s)
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        with torch.no_grad():
            for p in model.parameters():
                p.sub_(0.1 * (p.grad + 0.01 * p))
        assert bool((pruned_values(model, masks) == 0).all())
        for n, m in masks.items():  # the gradient of a pruned weight is exactly 0
            assert bool((model.get_submodule(n).weight.grad[m == 0] == 0).all())


def test_reapplying_replaces_the_masks(tiny_vit):
    model = randomize(tiny_vit().train())  # nonzero biases: a zeroed neuron is no saddle
    first = loop_masks(model, {0: [0, 1]}, {2: range(100)})
    second = loop_masks(model, {0: [1, 2]}, {2: range(50, 150)})
    apply_masks(model, first)
    apply_masks(model, second)
    assert all(torch.equal(current_masks(model)[n], second[n] != 0) for n in second)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for s in range(3):
        train_step(model, opt, seed=s)
    assert bool((pruned_values(model, second) == 0).all())
    only_first = {n: ((first[n] == 0) & (second[n] != 0)) for n in first}
    freed = torch.cat([model.get_submodule(n).weight.detach()[m] for n, m in only_first.items()])
    assert bool((freed != 0).all()), "weights pruned only by the old masks must train again"

    # a partial dict replaces everything: other layers become unmasked
    apply_masks(model, {"blocks.1.mlp.fc1": second["blocks.2.mlp.fc1"]})
    assert list(current_masks(model)) == ["blocks.1.mlp.fc1"]
    for s in range(5, 8):  # a zeroed head is a saddle for q/k until v and proj move
        train_step(model, opt, seed=s)
    assert bool((pruned_values(model, {k: v for k, v in second.items() if "blocks.0" in k})
                 != 0).all())


@pytest.mark.parametrize("how", ["deepcopy", "torch.save"])
def test_a_copy_of_a_masked_model_keeps_its_masks(tiny_vit, how):
    model = randomize(tiny_vit().train())
    masks = head_masks(model)
    apply_masks(model, masks)
    apply_masks(model, masks)  # re-applying adds no second set of hooks
    if how == "deepcopy":
        copied = copy.deepcopy(model)
    else:
        buf = io.BytesIO()
        torch.save(model, buf)
        buf.seek(0)
        copied = torch.load(buf, weights_only=False)
    assert all(torch.equal(current_masks(copied)[n], masks[n] != 0) for n in masks)
    opt = torch.optim.SGD(copied.parameters(), lr=0.1, momentum=0.9)
    for s in range(3):
        train_step(copied, opt, seed=s)
    assert bool((pruned_values(copied, masks) == 0).all())
    assert bool((pruned_values(model, masks) == 0).all())
    train_step(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    assert bool((pruned_values(model, masks) == 0).all())


def test_remove_masks_lets_weights_train_again(tiny_vit):
    model = randomize(tiny_vit().train())
    masks = head_masks(model)
    apply_masks(model, masks)
    remove_masks(model)
    assert current_masks(model) is None
    train_step(model, torch.optim.SGD(model.parameters(), lr=0.1))
    assert bool((pruned_values(model, masks) != 0).any())


def test_masks_of_any_dtype(tiny_vit):
    model = tiny_vit()
    masks = head_masks(model)
    for dtype in (torch.bool, torch.int8, torch.float64):
        m = copy.deepcopy(model)
        apply_masks(m, {n: v.to(dtype) for n, v in masks.items()})
        assert bool((pruned_values(m, masks) == 0).all())
        assert sparsity_report(m).zeros == zeros_of(masks)


# --------------------------------------------------------------------------- frozen weights
def masked_reference(model, masks):
    """A plain copy of the model with the pruned weights zeroed by hand and no masks."""
    ref = copy.deepcopy(model)
    remove_masks(ref)
    with torch.no_grad():
        for n, m in masks.items():
            ref.get_submodule(n).weight.mul_((m != 0).to(torch.float32))
    return ref


def test_apply_masks_on_a_frozen_model_then_unfreeze_and_train(tiny_vit):
    model = randomize(tiny_vit()).requires_grad_(False)
    masks = head_masks(model)
    apply_masks(model, masks)
    assert bool((pruned_values(model, masks) == 0).all())
    x, _ = batch()
    with torch.no_grad():
        assert torch.equal(model(x), masked_reference(model, masks)(x))
    model.requires_grad_(True).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for s in range(3):
        train_step(model, opt, seed=s)
        for n, m in masks.items():  # the gradient hook is in place once the weight needs it
            assert bool((model.get_submodule(n).weight.grad[m == 0] == 0).all())
    assert bool((pruned_values(model, masks) == 0).all())


def test_a_frozen_deep_copy_of_a_masked_model_runs(tiny_vit):
    model = randomize(tiny_vit())
    masks = head_masks(model)
    apply_masks(model, masks)
    frozen = copy.deepcopy(model).requires_grad_(False)
    x, _ = batch()
    assert torch.equal(frozen(x), model(x).detach())  # its first forward
    assert all(torch.equal(current_masks(frozen)[n], masks[n] != 0) for n in masks)


# --------------------------------------------------------------------------- functional_call
def test_functional_call_with_detached_weights(tiny_vit):
    model = randomize(tiny_vit())
    masks = head_masks(model)
    apply_masks(model, masks)
    other = randomize(tiny_vit(), seed=5)
    params = {k: v.detach() for k, v in other.named_parameters()}
    x, _ = batch()
    with torch.no_grad():
        got = functional_call(model, params, (x,))
        assert torch.equal(got, other(x))  # the substituted weights are used as they are
    assert not bool((params["blocks.0.attn.qkv.weight"][masks["blocks.0.attn.qkv"] == 0]
                     == 0).all()), "functional_call's own weights must not be masked"


def test_functional_call_never_hooks_the_substituted_tensors(tiny_vit):
    """Gradients of substituted leaf tensors are the plain autograd gradients: the masks'
    gradient hook stays on the model's own weights."""
    model = randomize(tiny_vit())
    masks = head_masks(model)
    apply_masks(model, masks)
    plain = randomize(tiny_vit(), seed=5)  # dense: nonzero where the masks prune
    params = {k: v.detach().clone().requires_grad_(True) for k, v in plain.named_parameters()}
    x, y = batch()
    nn.functional.cross_entropy(functional_call(model, params, (x,)), y).backward()
    nn.functional.cross_entropy(plain(x), y).backward()
    for name, m in masks.items():
        got, expected = params[name + ".weight"].grad, plain.get_submodule(name).weight.grad
        assert torch.allclose(got, expected, rtol=1e-5, atol=1e-7)
        if bool((m == 0).any()):
            assert bool((got[m == 0] != 0).any()), f"{name}: gradient masked on a substitute"
    assert all(p.grad is None for p in model.parameters())
    # and the model's own weights are still enforced afterwards
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train_step(model, opt)
    assert bool((pruned_values(model, masks) == 0).all())


# --------------------------------------------------------------------------- load_state_dict
@pytest.mark.parametrize("assign", [False, True])
def test_loading_a_dense_state_dict_keeps_pruned_weights_zero(tiny_vit, assign):
    model = randomize(tiny_vit())
    masks = head_masks(model)
    apply_masks(model, masks)
    dense = randomize(tiny_vit(), seed=7)
    model.load_state_dict(copy.deepcopy(dense.state_dict()), assign=assign)
    assert bool((pruned_values(model, masks) == 0).all())
    x, y = batch()
    with torch.no_grad():
        assert torch.equal(model(x), masked_reference(dense, masks)(x))
    assert kept_values(model, masks).equal(kept_values(dense, masks))
    # still enforced through training (with assign=True the weights are new Parameters)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for s in range(2):
        train_step(model, opt, seed=s)
        for n, m in masks.items():
            assert bool((model.get_submodule(n).weight.grad[m == 0] == 0).all())
    assert bool((pruned_values(model, masks) == 0).all())


def test_apply_masks_none_is_refused(tiny_vit):
    model = tiny_vit()
    apply_masks(model, head_masks(model))
    with pytest.raises(TypeError, match=r"masks must be a dict.*got None.*remove_masks"):
        apply_masks(model, None)
    assert current_masks(model) is not None  # nothing removed
