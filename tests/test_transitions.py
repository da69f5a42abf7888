"""engine.transitions and engine.rewind: pruning steps between states, Refill, RSST, rewinding."""

from __future__ import annotations

import copy
import time

import pytest
import torch
from torch import nn

from engine.pruning import current_masks, sparsity_report, structured_masks
from engine.rewind import RewindTarget, parse_rewind
from engine.rsst import RSSTRegularizer
from engine.transitions import begin_refill_state, begin_rsst_state, hard_cut, prune_step
from helpers.pruning import batch, loop_masks, pruned_values, randomize, structure_flags

pytestmark = pytest.mark.usefixtures("one_thread")

STEP = dict(rate=0.3, head_ratio=0.5, mlp_ratio=0.5)


def train(model, opt, steps, seed=0, reg=None):
    model.train()
    for s in range(steps):
        x, y = batch(seed + s)
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        if reg is not None:
            reg.step()
        opt.step()


def expected_after_rewind(saved, model):
    """The saved state with the model's masks in force applied (pruned weights are 0)."""
    out = {k: v.clone() for k, v in saved.items()}
    for name, mask in (current_masks(model) or {}).items():
        out[name + ".weight"] *= mask
    return out


def assert_state_equal(model, expected):
    sd = model.state_dict()
    assert sd.keys() == expected.keys()
    for k, v in sd.items():
        assert torch.equal(v, expected[k]), f"{k} differs"


# --------------------------------------------------------------------------- scores
@pytest.mark.parametrize("criterion", ["magnitude", "l1"])
def test_scores_come_from_the_trained_weights_not_the_rewind_target(tiny_vit, criterion):
    model = randomize(tiny_vit(), seed=0)
    init = RewindTarget.capture(model)
    init_copy = copy.deepcopy(model)
    randomize(model, seed=1)  # "training" moved every weight
    trained_copy = copy.deepcopy(model)
    calib = [batch(20)] if criterion == "l1" else None

    step = prune_step(model, criterion=criterion, calib=calib, **STEP)
    assert_state_equal(model, trained_copy.state_dict())  # prune_step does not touch the model
    from_trained = structured_masks(trained_copy, step.m_e, 0.5, 0.5, criterion=criterion,
                                    calib=calib)
    from_init = structured_masks(init_copy, step.m_e, 0.5, 0.5, criterion=criterion, calib=calib)
    assert structure_flags(model, step.m_s) == structure_flags(model, from_trained)
    assert structure_flags(model, step.m_s) != structure_flags(model, from_init)

    begin_refill_state(model, step.m_s, init)  # cut, then rewind the survivors
    assert all(torch.equal(current_masks(model)[n], step.m_s[n] != 0) for n in step.m_s)
    assert_state_equal(model, expected_after_rewind(init.state, model))
    assert bool((pruned_values(model, step.m_s) == 0).all())


def test_prune_step_reports(tiny_vit):
    model = tiny_vit()
    before = time.perf_counter()
    step = prune_step(model, **STEP)
    elapsed = time.perf_counter() - before
    assert step.report.to_dict() == sparsity_report(model, step.m_s).to_dict()
    assert step.elementwise_sparsity == pytest.approx(100 * int(0.3 * step.report.total)
                                                      / step.report.total)
    assert step.report.heads_kept == 6 and step.report.neurons_kept == 384
    assert 0 < step.seconds <= elapsed  # seconds, measured inside the call


# --------------------------------------------------------------------------- rewinding
def test_rewind_at_state_two_and_later_restores_the_saved_start(tiny_vit):
    model = randomize(tiny_vit())
    start = {k: v.clone() for k, v in model.state_dict().items()}
    rewind = RewindTarget.capture(model)
    live = {v.untyped_storage().data_ptr() for v in model.state_dict().values()}
    assert not live & {v.untyped_storage().data_ptr() for v in rewind.state.values()}
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    kept_heads = []
    for state in range(4):
        train(model, opt, 3, seed=10 * state)  # in-place updates of the live weights
        step = prune_step(model, **STEP)
        begin_refill_state(model, step.m_s, rewind)
        assert_state_equal(model, expected_after_rewind(start, model))
        kept_heads.append(step.report.heads_kept)
    assert kept_heads == [6, 3, 1, 1]  # max(1, int(alive * 0.5)) compounding
    assert all(torch.equal(rewind.state[k], start[k]) for k in start)  # never drifted


def test_a_target_sharing_storage_would_drift(tiny_vit):
    """Guards the test above: the research code's non-copy target fails that check."""
    model = randomize(tiny_vit())
    start = {k: v.clone() for k, v in model.state_dict().items()}
    shared = RewindTarget({k: v.detach() for k, v in model.state_dict().items()})
    train(model, torch.optim.SGD(model.parameters(), lr=0.05), 2)
    shared.restore(model)
    assert not all(torch.equal(v, start[k]) for k, v in model.state_dict().items())


def test_rewind_to_epoch_k_and_none(tiny_vit):
    model = randomize(tiny_vit())
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    assert parse_rewind("epoch:2") == ("epoch", 2)
    train(model, opt, 2)  # "2 epochs of state 0"
    after_k = RewindTarget.capture(model)
    saved = {k: v.clone() for k, v in after_k.state.items()}
    train(model, opt, 3, seed=5)
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    step = prune_step(model, **STEP)

    keep_going = copy.deepcopy(model)
    assert parse_rewind("none") == ("none", None)
    begin_refill_state(keep_going, step.m_s, None)  # plain fine-tuning: trained weights, cut
    assert_state_equal(keep_going, expected_after_rewind(trained, keep_going))

    begin_refill_state(model, step.m_s, after_k)
    assert_state_equal(model, expected_after_rewind(saved, model))
    assert not torch.equal(model.state_dict()["blocks.0.mlp.fc1.weight"],
                           keep_going.state_dict()["blocks.0.mlp.fc1.weight"])


# --------------------------------------------------------------------------- RSST
def test_rsst_squeeze_then_hard_cut_over_two_steps(tiny_vit):
    model = randomize(tiny_vit())
    rewind = RewindTarget.capture(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    train(model, opt, 3)

    step = prune_step(model, **STEP)
    target = begin_rsst_state(model, step.m_s, rewind)
    reg = RSSTRegularizer(model, target, reg_granularity=1.0, ramp_steps=25)
    assert current_masks(model) is None  # RSST does not cut yet
    assert_state_equal(model, rewind.state)
    assert (reg.heads, reg.neurons) == (6, 384)
    doomed_start = float(pruned_values(model, step.m_s).norm())
    train(model, opt, 30, seed=100, reg=reg)
    doomed = pruned_values(model, step.m_s)
    assert float(doomed.norm()) < 0.2 * doomed_start
    assert hard_cut(model, step.m_s) == pytest.approx(float(doomed.double().norm()), rel=1e-5)
    assert bool((pruned_values(model, step.m_s) == 0).all())
    train(model, opt, 2, seed=200)
    assert bool((pruned_values(model, step.m_s) == 0).all())

    # second step: compounding on the hard mask, the rewind keeps the cut
    step2 = prune_step(model, **STEP)
    for b2, b1 in zip(*(structure_flags(model, m) for m in (step2.m_s, step.m_s))):
        for k2, k1 in zip(b2, b1):
            assert all(a <= b for a, b in zip(k2, k1))
    reg2 = RSSTRegularizer(model, begin_rsst_state(model, step2.m_s, rewind))
    assert_state_equal(model, expected_after_rewind(rewind.state, model))
    assert (reg2.heads, reg2.neurons) == (3, 192)  # only the newly condemned ones


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("spec", ["epoch:-1", "epoch:", "epoch:x", "latest", "", 3, None,
                                  "INIT"])
def test_bad_rewind_spec(spec):
    with pytest.raises(ValueError, match="rewind must be 'init', 'none' or 'epoch:K'"):
        parse_rewind(spec)


def test_rewind_target_of_another_model(tiny_vit):
    target = RewindTarget.capture(tiny_vit(depth=2))
    with pytest.raises(ValueError, match="rewind target does not match the model"):
        target.restore(tiny_vit())
    with pytest.raises(ValueError, match=r"unexpected \['blocks.2"):
        RewindTarget.capture(tiny_vit()).restore(tiny_vit(depth=2))
    narrow = RewindTarget.capture(tiny_vit(embed_dim=32, num_heads=2))
    model = tiny_vit()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match="shape mismatches"):
        narrow.restore(model)
    assert_state_equal(model, before)  # nothing was half-copied


def test_hard_cut_checks_its_masks(tiny_vit):
    model = tiny_vit()
    good = loop_masks(model, {0: [1]}, {})
    with pytest.raises(ValueError, match=r"m_s has a mask for 'blocks.9.attn.qkv'"):
        hard_cut(model, {**good, "blocks.9.attn.qkv": torch.ones(3, 3)})
    with pytest.raises(ValueError, match=r"m_s\['blocks.0.attn.qkv'\] has shape"):
        hard_cut(model, {**good, "blocks.0.attn.qkv": torch.ones(3, 3)})
    assert current_masks(model) is None
