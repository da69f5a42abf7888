"""engine.pruning.criteria: each criterion against a loop reference, remain's incoming-weight
count, activation criteria on masked and frozen models, three successive steps, calibration
checks, and criteria as pluggable objects."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from engine.pruning import (Criterion, apply_masks, current_masks, elementwise_masks,
                            structured_masks)
from helpers.pruning import (batch, geometry, head_cols, head_rows, randomize, structure_flags,
                             train_step)

pytestmark = pytest.mark.usefixtures("one_thread")

CRITERIA = ("remain", "magnitude", "l1", "l2", "saliency")


# --------------------------------------------------------------------------- loop reference
def ref_scores(model, m_e, criterion, calib):
    """Per block, lists of head and neuron scores, computed the plain way (loops, a masked
    deep copy, ``.backward()``)."""
    H, D, N = geometry(model)
    masked = copy.deepcopy(model).eval()
    with torch.no_grad():
        for n, m in m_e.items():
            masked.get_submodule(n).weight.mul_(m)
    heads, neurons = [], []
    if criterion in ("l1", "l2"):
        outs = {b: ([], []) for b in range(len(model.blocks))}
        for b, blk in enumerate(masked.blocks):
            blk.attn.qkv.register_forward_hook(lambda m, i, o, b=b: outs[b][0].append(o))
            blk.mlp.fc1.register_forward_hook(lambda m, i, o, b=b: outs[b][1].append(o))
        with torch.no_grad():
            for x, _ in calib:
                masked(x)
    if criterion == "saliency":
        masked.zero_grad()
        for x, y in calib:
            nn.functional.cross_entropy(masked(x), y).backward()
    for b, blk in enumerate(masked.blocks):
        p = f"blocks.{b}."
        hs, ns = [], []
        for h in range(H):
            rows, cols = head_rows(H, D, h), head_cols(D, h)
            if criterion == "remain":  # incoming weights only: the head's qkv rows
                s = sum(int((m_e[p + "attn.qkv"][r] != 0).sum()) for r in rows)
            elif criterion == "magnitude":  # the current weights, not m_e-masked
                w = model.blocks[b].attn.qkv.weight.detach()
                s = sum(float(w[r].double().abs().sum()) for r in rows)
            elif criterion in ("l1", "l2"):
                o = torch.cat([t.reshape(-1, t.shape[-1]) for t in outs[b][0]])[:, rows].double()
                s = activation_score(o, criterion)
            else:
                wq, wp = blk.attn.qkv.weight, blk.attn.proj.weight
                s = sum(float((wq[r] * wq.grad[r]).detach().double().sum()) for r in rows)
                s += sum(float((wp[:, c] * wp.grad[:, c]).detach().double().sum())
                         for c in cols)
                s = abs(s)
            hs.append(s)
        for n in range(N):
            if criterion == "remain":  # incoming weights only: the neuron's fc1 row
                s = int((m_e[p + "mlp.fc1"][n] != 0).sum())
            elif criterion == "magnitude":
                s = float(model.blocks[b].mlp.fc1.weight.detach()[n].double().abs().sum())
            elif criterion in ("l1", "l2"):
                o = torch.cat([t.reshape(-1, t.shape[-1]) for t in outs[b][1]])[:, n].double()
                s = activation_score(o, criterion)
            else:
                w1, w2 = blk.mlp.fc1.weight, blk.mlp.fc2.weight
                s = abs(float((w1[n] * w1.grad[n]).detach().double().sum())
                        + float((w2[:, n] * w2.grad[:, n]).detach().double().sum()))
            ns.append(s)
        heads.append(hs)
        neurons.append(ns)
    return heads, neurons


def activation_score(outputs, criterion):
    """Mean |x| (l1) or root mean square (l2) of a structure's outputs."""
    if criterion == "l1":
        return float(outputs.abs().mean())
    return math.sqrt(float(outputs.pow(2).mean()))


def ref_alive(model, m_e):
    H, D, N = geometry(model)
    heads, neurons = [], []
    for b in range(len(model.blocks)):
        p = f"blocks.{b}."
        heads.append([bool(any((m_e[p + "attn.qkv"][r] != 0).any() for r in head_rows(H, D, h))
                           or (m_e[p + "attn.proj"][:, head_cols(D, h)] != 0).any())
                      for h in range(H)])
        neurons.append([bool((m_e[p + "mlp.fc1"][n] != 0).any() or
                             (m_e[p + "mlp.fc2"][:, n] != 0).any()) for n in range(N)])
    return heads, neurons


def ref_keep(scores, alive, ratio, sorting):
    """Keep flags: per group, the max(1, int(alive * (1 - ratio))) best alive structures;
    equal scores → earlier block, then lower index."""
    entries = [(b, i) for b, blk in enumerate(scores) for i in range(len(blk))]
    groups = [entries] if sorting == "global" else [
        [e for e in entries if e[0] == b] for b in range(len(scores))]
    keep = [[False] * len(blk) for blk in scores]
    for group in groups:
        cand = [e for e in group if alive[e[0]][e[1]]]
        k = max(1, int(len(cand) * (1 - ratio))) if cand else 0
        for b, i in sorted(cand, key=lambda e: (-scores[e[0]][e[1]], e[0], e[1]))[:k]:
            keep[b][i] = True
    return keep


def assert_same_selection(got, expect, scores, rtol=1e-5):
    """Equal keep flags, except that float rounding may swap two structures whose reference
    scores are equal to within ``rtol`` (and then only at the cut)."""
    flips = [(b, i) for b in range(len(got)) for i in range(len(got[b]))
             if got[b][i] != expect[b][i]]
    if not flips:
        return
    kept = [scores[b][i] for b in range(len(expect)) for i in range(len(expect[b])) if expect[b][i]]
    edge = min(kept)
    for b, i in flips:
        assert scores[b][i] == pytest.approx(edge, rel=rtol), \
            f"structure {i} of block {b} (score {scores[b][i]}) selected wrongly; cut at {edge}"
    assert sum(map(sum, got)) == sum(map(sum, expect))


@pytest.fixture
def criteria_setup(tiny_vit):
    model = randomize(tiny_vit(proj_drop_rate=0.5, drop_rate=0.5), std=0.1)
    m_e = elementwise_masks(model, rate=0.5)
    H, D, _ = geometry(model)
    # head 1 of block 0 and neuron 5 of block 2 are already gone: they must stay pruned
    m_e["blocks.0.attn.qkv"][head_rows(H, D, 1)] = 0
    m_e["blocks.0.attn.proj"][:, head_cols(D, 1)] = 0
    m_e["blocks.2.mlp.fc1"][5] = 0
    m_e["blocks.2.mlp.fc2"][:, 5] = 0
    calib = [batch(10), batch(11, n=3)]
    return model, m_e, calib


@pytest.mark.parametrize("sorting", ["global", "layer-wise"])
@pytest.mark.parametrize("criterion", CRITERIA)
def test_criterion_matches_loop_reference(criteria_setup, criterion, sorting):
    model, m_e, calib = criteria_setup
    model.train()  # activation criteria must measure in eval mode (dropout is 0.5 here)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    m_s = structured_masks(model, m_e, head_ratio=0.5, mlp_ratio=0.4, sorting=sorting,
                           criterion=criterion, calib=calib)
    assert model.training, "the model's mode must be restored"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())

    heads, neurons = structure_flags(model, m_s)
    ref_h, ref_n = ref_scores(model.eval(), m_e, criterion, calib)
    alive_h, alive_n = ref_alive(model, m_e)
    assert not alive_h[0][1] and not alive_n[2][5]
    assert not heads[0][1] and not neurons[2][5]
    assert_same_selection(heads, ref_keep(ref_h, alive_h, 0.5, sorting), ref_h)
    assert_same_selection(neurons, ref_keep(ref_n, alive_n, 0.4, sorting), ref_n)


def test_criteria_rank_differently(criteria_setup):
    """Guards the reference test: the five criteria are not secretly the same ranking."""
    model, m_e, calib = criteria_setup
    keeps = {c: structure_flags(model, structured_masks(model, m_e, 0.5, 0.5, "global", c,
                                                        calib=calib)) for c in CRITERIA}
    flat = {c: str(v) for c, v in keeps.items()}
    assert len(set(flat.values())) == len(CRITERIA)


def test_saliency_uses_loss_fn(criteria_setup):
    model, m_e, calib = criteria_setup
    ce = structured_masks(model, m_e, 0.5, 0.5, criterion="saliency", calib=calib)
    other = structured_masks(model, m_e, 0.5, 0.5, criterion="saliency", calib=calib,
                             loss_fn=lambda out, y: out.pow(2).mean())
    assert structure_flags(model, ce) != structure_flags(model, other)


# --------------------------------------------------------------------------- remain
def test_remain_counts_incoming_weights_only(tiny_vit):
    """Block 0 of the tiny ViT (4 heads of 3 × 16 qkv rows × 64 inputs = 3,072 incoming weights
    and 64 × 16 = 1,024 proj weights; 256 neurons of 64 fc1 and 64 fc2 weights), layer-wise,
    half of the heads and neurons pruned. Pruned in m_e:

        head:              h0    h1    h2    h3
        qkv weights        100   200   50    150   → incoming alive 2972 2872 3022 2922
        proj weights       0     0     500   0     → whole alive    3996 3896 3546 3946

    Incoming (Refill) keeps h2 and h0; counting whole heads would keep h0 and h3.
    Neurons 0-127 lose 1 fc1 weight (incoming 63, whole 127), neurons 128-255 lose 2 fc2
    weights (incoming 64, whole 126): incoming keeps 128-255, whole would keep 0-127."""
    model = tiny_vit()
    H, D, N = geometry(model)
    blk = model.blocks[0]
    m_e = {f"blocks.0.{p}": torch.ones_like(lin.weight) for p, lin in (
        ("attn.qkv", blk.attn.qkv), ("attn.proj", blk.attn.proj), ("mlp.fc1", blk.mlp.fc1),
        ("mlp.fc2", blk.mlp.fc2))}
    for h, k in enumerate([100, 200, 50, 150]):
        rows = m_e["blocks.0.attn.qkv"][head_rows(H, D, h)]  # (48, 64) copy
        rows.view(-1)[:k] = 0
        m_e["blocks.0.attn.qkv"][head_rows(H, D, h)] = rows
    cols = m_e["blocks.0.attn.proj"][:, head_cols(D, 2)].clone()
    cols.view(-1)[:500] = 0
    m_e["blocks.0.attn.proj"][:, head_cols(D, 2)] = cols
    m_e["blocks.0.mlp.fc1"][:128, 0] = 0
    m_e["blocks.0.mlp.fc2"][:2, 128:] = 0
    # the hand-worked counts above, read back from the masks
    qkv_alive = [int(m_e["blocks.0.attn.qkv"][head_rows(H, D, h)].sum()) for h in range(H)]
    proj_alive = [int(m_e["blocks.0.attn.proj"][:, head_cols(D, h)].sum()) for h in range(H)]
    assert qkv_alive == [2972, 2872, 3022, 2922] and proj_alive == [1024, 1024, 524, 1024]

    heads, neurons = structure_flags(model, structured_masks(
        model, m_e, head_ratio=0.5, mlp_ratio=0.5, sorting="layer-wise", criterion="remain"))
    assert heads[0] == [True, False, True, False]
    assert neurons[0] == [False] * 128 + [True] * 128
    # blocks without a mask: every structure alive and equal → the lower indices are kept
    assert heads[1] == heads[2] == [True, True, False, False]
    assert neurons[1] == neurons[2] == [True] * 128 + [False] * 128


# --------------------------------------------------------------------------- several steps
def expected_kept(alive, ratio, steps):
    """Kept after each step, compounding on what is alive: max(1, int(alive * (1 - ratio)))."""
    out = []
    for _ in range(steps):
        alive = max(1, int(alive * (1 - ratio)))
        out.append(alive)
    return out


@pytest.mark.parametrize("sorting", ["global", "layer-wise"])
@pytest.mark.parametrize("criterion", CRITERIA)
def test_three_successive_steps(tiny_vit, criterion, sorting):
    """Element-wise step, structured step, apply, train — three times, on the masked model
    (l1 / l2 used to fail at the second step: their activation pass met the masks' hooks)."""
    model = randomize(tiny_vit()).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    calib = [batch(10), batch(11, n=3)]
    if sorting == "global":  # 3 blocks × 4 heads, 3 × 256 neurons
        want_heads, want_neurons = expected_kept(12, 0.3, 3), expected_kept(768, 0.3, 3)
    else:
        want_heads, want_neurons = expected_kept(4, 0.3, 3), expected_kept(256, 0.3, 3)
    previous = None
    for step in range(3):
        m_e = elementwise_masks(model, 0.3, masks=current_masks(model))
        m_s = structured_masks(model, m_e, head_ratio=0.3, mlp_ratio=0.3, sorting=sorting,
                               criterion=criterion, calib=calib)
        heads, neurons = structure_flags(model, m_s)  # whole heads and neurons only
        if sorting == "global":
            assert sum(map(sum, heads)) == want_heads[step]
            assert sum(map(sum, neurons)) == want_neurons[step]
        else:
            assert [sum(h) for h in heads] == [want_heads[step]] * 3
            assert [sum(n) for n in neurons] == [want_neurons[step]] * 3
        if previous is not None:  # a pruned structure never comes back
            for now, before in zip(heads + neurons, previous[0] + previous[1]):
                assert all(b or not n for n, b in zip(now, before))
        previous = heads, neurons
        apply_masks(model, m_s)
        train_step(model, opt, seed=step)
    assert model.training


@pytest.mark.parametrize("criterion", ["l1", "l2", "saliency"])
def test_activation_criteria_on_a_frozen_masked_model(tiny_vit, criterion):
    model = randomize(tiny_vit())
    apply_masks(model, structured_masks(model, None, 0.25, 0.25))
    model.requires_grad_(False)
    calib = [batch(10)]
    m_e = elementwise_masks(model, 0.3, masks=current_masks(model))
    heads, _ = structure_flags(model, structured_masks(model, m_e, 0.5, 0.5, criterion=criterion,
                                                       calib=calib))
    assert sum(map(sum, heads)) == max(1, int(9 * 0.5))
    assert all(not p.requires_grad for p in model.parameters())


# --------------------------------------------------------------------------- calibration input
@pytest.mark.parametrize("criterion", ["l1", "l2", "saliency"])
def test_calibration_images_that_do_not_fit_the_model(tiny_vit, criterion):
    model = tiny_vit().train()
    good = batch(1)
    cases = [
        ([good, batch(2, size=28)], ValueError,
         r"calib batch 1: images are 28×28 but the model takes 32×32"),
        ([(torch.randn(2, 1, 32, 32), torch.zeros(2, dtype=torch.long))], ValueError,
         r"calib batch 0: images have 1 channels, the model takes 3"),
        ([(torch.randn(3, 32, 32), torch.zeros(3, dtype=torch.long))], TypeError,
         r"calib batch 0: images must be a \(batch, channels, height, width\) tensor"),
    ]
    for calib, exc, message in cases:
        with pytest.raises(exc, match=message):
            structured_masks(model, None, criterion=criterion, calib=calib)
        assert model.training  # the mode is restored on the way out


def test_calibration_size_of_a_dynamic_size_model(tiny_vit):
    model = tiny_vit(dynamic_img_size=True)
    structured_masks(model, None, criterion="l1", calib=[batch(1, size=40)])  # 5 × 5 patches
    with pytest.raises(ValueError, match=r"calib batch 0: images are 36×36, not a multiple of "
                                         r"the model's 8×8 patches"):
        structured_masks(model, None, criterion="l1", calib=[batch(1, size=36)])


def test_saliency_needs_one_label_per_image(tiny_vit):
    x, y = batch(1)
    with pytest.raises(ValueError, match=r"calib batch 0: labels must be a tensor with one "
                                         r"label per image \(4\), got shape \(3,\)"):
        structured_masks(tiny_vit(), None, criterion="saliency", calib=[(x, y[:3])])


# --------------------------------------------------------------------------- pluggable
class LaterIsBetter(Criterion):
    """A user's own criterion: a structure's score is its index."""

    name = "later-is-better"

    def __call__(self, inp):
        return ([torch.arange(b.num_heads, dtype=torch.float64) for b in inp.struct],
                [torch.arange(b.hidden, dtype=torch.float64) for b in inp.struct])


def test_a_criterion_object_can_be_passed(tiny_vit):
    model = tiny_vit()
    heads, neurons = structure_flags(model, structured_masks(
        model, None, 0.5, 0.25, sorting="layer-wise", criterion=LaterIsBetter()))
    assert heads == [[False, False, True, True]] * 3
    assert neurons == [[False] * 64 + [True] * 192] * 3
    with pytest.raises(ValueError, match=r"criterion must be one of .*Criterion instance"):
        structured_masks(model, None, criterion=LaterIsBetter)  # the class, not an instance
