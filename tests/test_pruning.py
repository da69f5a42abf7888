"""engine.pruning: element-wise and structured masks, applying them, the sparsity report.

Golden numbers (DESIGN.md §2) on ViT-S/16 at random init; everything else on a tiny ViT against
straightforward loop-based reference implementations.
"""

from __future__ import annotations

import copy
import io
import json
import math

import pytest
import timm
import torch
from torch import nn

from engine.pruning import (apply_masks, current_masks, elementwise_masks, remove_masks,
                            sparsity_report, structured_masks)
from engine.structure import describe

pytestmark = pytest.mark.usefixtures("one_thread")

CRITERIA = ("remain", "magnitude", "l1", "l2", "saliency")


# --------------------------------------------------------------------------- helpers
def head_rows(H: int, D: int, h: int):
    """Rows of qkv.weight that belong to head h (q, k and v), timm layout (3, H, D)."""
    return [s * H * D + h * D + d for s in range(3) for d in range(D)]


def head_cols(D: int, h: int):
    return list(range(h * D, (h + 1) * D))


def geometry(model):
    blk = model.blocks[0]
    H = blk.attn.num_heads
    D = blk.attn.qkv.out_features // (3 * H)
    return H, D, blk.mlp.fc1.out_features


def loop_masks(model, pruned_heads, pruned_neurons):
    """Dense 0/1 masks built row by row: pruned_heads[b] / pruned_neurons[b] are index sets."""
    H, D, _ = geometry(model)
    out = {}
    for b, blk in enumerate(model.blocks):
        qkv = torch.ones_like(blk.attn.qkv.weight)
        proj = torch.ones_like(blk.attn.proj.weight)
        fc1 = torch.ones_like(blk.mlp.fc1.weight)
        fc2 = torch.ones_like(blk.mlp.fc2.weight)
        for h in pruned_heads.get(b, ()):
            for r in head_rows(H, D, h):
                qkv[r] = 0
            for c in head_cols(D, h):
                proj[:, c] = 0
        for n in pruned_neurons.get(b, ()):
            fc1[n] = 0
            fc2[:, n] = 0
        out.update({f"blocks.{b}.attn.qkv": qkv, f"blocks.{b}.attn.proj": proj,
                    f"blocks.{b}.mlp.fc1": fc1, f"blocks.{b}.mlp.fc2": fc2})
    return out


def structure_flags(model, masks):
    """(heads, neurons): per block, a list of keep flags read back from the masks; asserts
    every head / neuron is kept or pruned as a whole (reshaping to (3, H, D, C) etc.)."""
    H, D, N = geometry(model)
    heads, neurons = [], []
    for b, blk in enumerate(model.blocks):
        p = f"blocks.{b}."
        q = masks[p + "attn.qkv"].float().reshape(3, H, D, -1)
        pr = masks[p + "attn.proj"].float().reshape(-1, H, D)
        f1 = masks[p + "mlp.fc1"].float()
        f2 = masks[p + "mlp.fc2"].float()
        hf = q[0, :, 0, 0]
        assert set(hf.tolist()) <= {0.0, 1.0}
        assert torch.equal(q, hf.view(1, H, 1, 1).expand_as(q)), f"block {b}: partial head in qkv"
        assert torch.equal(pr, hf.view(1, H, 1).expand_as(pr)), f"block {b}: proj != qkv heads"
        nf = f1[:, 0]
        assert set(nf.tolist()) <= {0.0, 1.0}
        assert torch.equal(f1, nf.view(N, 1).expand_as(f1)), f"block {b}: partial fc1 row"
        assert torch.equal(f2, nf.view(1, N).expand_as(f2)), f"block {b}: fc2 != fc1 neurons"
        heads.append([bool(x) for x in hf])
        neurons.append([bool(x) for x in nf])
    return heads, neurons


def batch(seed=0, n=4, classes=10):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, classes, (n,), generator=g)


def train_step(model, opt, seed=0):
    x, y = batch(seed)
    opt.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def randomize(model, std=0.1, seed=0):
    """Re-draw every parameter (timm zero-initialises biases and norms)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


# --------------------------------------------------------------------------- golden numbers
@pytest.fixture(scope="module")
def vit_s():
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch16_224", pretrained=False).eval()
    m_e = elementwise_masks(model, rate=0.3)
    return model, m_e


TOTAL_S = 21_233_664  # DESIGN.md §2: 12 × (442,368 + 147,456 + 589,824 + 589,824)


def zeros_of(masks):
    return sum(int((m == 0).sum()) for m in masks.values())


def test_golden_elementwise(vit_s):
    model, m_e = vit_s
    assert set(m_e) == set(describe(model).names)
    assert sum(m.numel() for m in m_e.values()) == TOTAL_S
    assert zeros_of(m_e) == int(0.3 * TOTAL_S)
    w = torch.cat([model.get_submodule(k).weight.detach().abs().flatten() for k in m_e])
    keep = torch.cat([m.flatten() for m in m_e.values()]) != 0
    assert w[~keep].max() <= w[keep].min()  # the smallest |w| went


def test_golden_global(vit_s):
    model, m_e = vit_s
    m_s = structured_masks(model, m_e, head_ratio=0.3, mlp_ratio=0.3, sorting="global",
                           criterion="magnitude")
    heads, neurons = structure_flags(model, m_s)
    assert sum(not k for blk in heads for k in blk) == 22
    assert sum(not k for blk in neurons for k in blk) == 5530
    assert zeros_of(m_s) == 6_409_728
    report = sparsity_report(model, m_s)
    assert (report.zeros, report.total) == (6_409_728, TOTAL_S)
    assert round(report.sparsity, 2) == 30.19
    assert (report.heads_kept, report.neurons_kept) == (72 - 22, 12 * 1536 - 5530)
    for b, row in enumerate(report.layers):
        attn = [m_s[f"blocks.{b}.attn.{p}"] for p in ("qkv", "proj")]
        attn_zeros = sum(int((m == 0).sum()) for m in attn)
        attn_total = sum(m.numel() for m in attn)
        assert (attn_zeros * 6) % attn_total == 0, f"block {b}: not a multiple of 1/6"
        assert row.attn_sparsity == pytest.approx(100 * attn_zeros / attn_total)
        assert row.heads_kept == sum(heads[b])


def test_golden_layerwise(vit_s):
    model, m_e = vit_s
    m_s = structured_masks(model, m_e, head_ratio=0.3, mlp_ratio=0.3, sorting="layer-wise",
                           criterion="magnitude")
    heads, neurons = structure_flags(model, m_s)
    assert all(sum(not k for k in blk) == 2 for blk in heads)
    assert all(sum(not k for k in blk) == 461 for blk in neurons)
    assert zeros_of(m_s) == 6_607_872
    report = sparsity_report(model, m_s)
    assert report.zeros == 6_607_872 and round(report.sparsity, 2) == 31.12
    for row in report.layers:
        assert round(row.attn_sparsity, 2) == 33.33
        assert round(row.mlp_sparsity, 2) == 30.01
        assert (row.heads_kept, row.heads_total) == (4, 6)
        assert (row.neurons_kept, row.neurons_total) == (1536 - 461, 1536)


def test_golden_numbers_do_not_depend_on_the_init():
    torch.manual_seed(123)
    model = timm.create_model("vit_small_patch16_224", pretrained=False)
    m_e = elementwise_masks(model, rate=0.3)
    assert zeros_of(structured_masks(model, m_e, 0.3, 0.3, "global")) == 6_409_728
    assert zeros_of(structured_masks(model, m_e, 0.3, 0.3, "layer-wise")) == 6_607_872


# --------------------------------------------------------------------------- element-wise
def test_elementwise_matches_a_sorted_reference_and_keeps_dead_weights_dead(tiny_vit):
    model = tiny_vit()
    names = describe(model).names
    g = torch.Generator().manual_seed(1)
    prev = {n: (torch.rand(model.get_submodule(n).weight.shape, generator=g) > 0.2).float()
            for n in names}
    with torch.no_grad():  # dead weights with large |w| must stay dead
        for n in names:
            w = model.get_submodule(n).weight
            w.copy_(torch.where(prev[n] == 0, w * 1000, w))
    m_e = elementwise_masks(model, rate=0.4, masks=prev)

    flat, order = [], []
    for n in names:
        w = model.get_submodule(n).weight.detach().flatten().tolist()
        p = prev[n].flatten().tolist()
        for i, (wi, pi) in enumerate(zip(w, p)):
            if pi != 0:
                flat.append((abs(wi), len(order)))
            order.append((n, i, pi != 0))
    k = int(0.4 * len(flat))
    pruned = {idx for _, idx in sorted(flat)[:k]}  # smallest |w|, earliest first on ties
    expect = torch.tensor([0.0 if (not alive or j in pruned) else 1.0
                           for j, (_, _, alive) in enumerate(order)])
    got = torch.cat([m_e[n].flatten() for n in names])
    assert torch.equal(got, expect)


def test_elementwise_ties_go_to_the_earlier_weight(tiny_vit):
    model = tiny_vit()
    with torch.no_grad():
        for lin in describe(model).linears().values():
            lin.weight.fill_(0.5)
    m_e = elementwise_masks(model, rate=0.5)
    got = torch.cat([m_e[n].flatten() for n in describe(model).names])
    k = int(0.5 * got.numel())
    assert torch.equal(got, torch.cat([torch.zeros(k), torch.ones(got.numel() - k)]))


def test_elementwise_rate_zero_keeps_previous_masks(tiny_vit):
    model = tiny_vit()
    prev = elementwise_masks(model, rate=0.3)
    again = elementwise_masks(model, rate=0.0, masks=prev)
    assert all(torch.equal(again[n], prev[n]) for n in prev)


# --------------------------------------------------------------------------- criteria
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
            if criterion == "remain":
                s = sum(int((m_e[p + "attn.qkv"][r] != 0).sum()) for r in rows)
                s += sum(int((m_e[p + "attn.proj"][:, c] != 0).sum()) for c in cols)
            elif criterion == "magnitude":  # the current weights, not m_e-masked
                w = model.blocks[b].attn.qkv.weight.detach()
                s = sum(float(w[r].double().abs().sum()) for r in rows)
            elif criterion in ("l1", "l2"):
                o = torch.cat([t.reshape(-1, t.shape[-1]) for t in outs[b][0]])[:, rows].double()
                s = float(o.abs().mean()) if criterion == "l1" else math.sqrt(float(o.pow(2).mean()))
            else:
                wq, wp = blk.attn.qkv.weight, blk.attn.proj.weight
                s = sum(float((wq[r] * wq.grad[r]).detach().double().sum()) for r in rows)
                s += sum(float((wp[:, c] * wp.grad[:, c]).detach().double().sum())
                         for c in cols)
                s = abs(s)
            hs.append(s)
        for n in range(N):
            if criterion == "remain":
                s = int((m_e[p + "mlp.fc1"][n] != 0).sum()) + int((m_e[p + "mlp.fc2"][:, n] != 0).sum())
            elif criterion == "magnitude":
                s = float(model.blocks[b].mlp.fc1.weight.detach()[n].double().abs().sum())
            elif criterion in ("l1", "l2"):
                o = torch.cat([t.reshape(-1, t.shape[-1]) for t in outs[b][1]])[:, n].double()
                s = float(o.abs().mean()) if criterion == "l1" else math.sqrt(float(o.pow(2).mean()))
            else:
                w1, w2 = blk.mlp.fc1.weight, blk.mlp.fc2.weight
                s = abs(float((w1[n] * w1.grad[n]).detach().double().sum())
                        + float((w2[:, n] * w2.grad[:, n]).detach().double().sum()))
            ns.append(s)
        heads.append(hs)
        neurons.append(ns)
    return heads, neurons


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


# --------------------------------------------------------------------------- selection
def fill_heads(model, values, neuron_value=1.0):
    """Head h of block b gets every qkv weight = values[b][h]; all neurons equal."""
    H, D, _ = geometry(model)
    with torch.no_grad():
        for b, blk in enumerate(model.blocks):
            for h in range(H):
                blk.attn.qkv.weight[head_rows(H, D, h)] = values[b][h]
            blk.mlp.fc1.weight.fill_(neuron_value)
    return model


def test_equal_scores_keep_earlier_block_then_lower_index(tiny_vit):
    model = fill_heads(tiny_vit(), [[1.0] * 4] * 3)
    heads, neurons = structure_flags(model, structured_masks(model, None, 0.5, 0.5, "global"))
    assert heads == [[True] * 4, [True] * 2 + [False] * 2, [False] * 4]
    assert [n for blk in neurons for n in blk] == [True] * 384 + [False] * 384
    assert heads[2] == [False] * 4  # global ranking may empty a block
    heads, neurons = structure_flags(model, structured_masks(model, None, 0.5, 0.5, "layer-wise"))
    assert heads == [[True, True, False, False]] * 3
    assert neurons == [[True] * 128 + [False] * 128] * 3


def test_ties_straddling_the_cut(tiny_vit):
    model = fill_heads(tiny_vit(), [[1, 3, 3, 1], [3, 1, 1, 3], [2, 3, 3, 2]])
    heads, _ = structure_flags(model, structured_masks(model, None, 0.6, 0.0, "global"))
    assert int(12 * (1 - 0.6)) == 4
    assert heads == [[False, True, True, False], [True, False, False, True], [False] * 4]
    heads, _ = structure_flags(model, structured_masks(model, None, 0.6, 0.0, "layer-wise"))
    assert heads == [[False, True, False, False], [True, False, False, False],
                     [False, True, False, False]]


@pytest.mark.parametrize("sorting, hr, mr", [
    ("global", 0.3, 0.3), ("global", 0.95, 0.999), ("global", 0.0, 0.0),
    ("layer-wise", 0.3, 0.3), ("layer-wise", 0.9, 0.999), ("layer-wise", 0.5, 0.7),
])
def test_keep_counts(tiny_vit, sorting, hr, mr):
    model = tiny_vit()
    heads, neurons = structure_flags(model, structured_masks(model, None, hr, mr, sorting))
    if sorting == "global":
        assert sum(map(sum, heads)) == max(1, int(12 * (1 - hr)))
        assert sum(map(sum, neurons)) == max(1, int(768 * (1 - mr)))
    else:
        assert [sum(h) for h in heads] == [max(1, int(4 * (1 - hr)))] * 3
        assert [sum(n) for n in neurons] == [max(1, int(256 * (1 - mr)))] * 3


def test_second_step_compounds_on_alive_structures(tiny_vit):
    model = randomize(tiny_vit(), seed=3)
    m_s1 = structured_masks(model, elementwise_masks(model, 0.3), 0.5, 0.5, "global")
    heads1, neurons1 = structure_flags(model, m_s1)
    # the pruned structures now have the LARGEST weights: they must stay pruned anyway
    with torch.no_grad():
        for n, m in m_s1.items():
            w = model.get_submodule(n).weight
            w.copy_(torch.where(m == 0, w * 100, w))
    m_e2 = elementwise_masks(model, 0.3, masks=m_s1)
    alive1 = sum(int((m != 0).sum()) for m in m_s1.values())
    assert zeros_of(m_e2) == zeros_of(m_s1) + int(0.3 * alive1)
    assert all(bool(((m_e2[n] != 0) <= (m_s1[n] != 0)).all()) for n in m_s1)
    for sorting in ("global", "layer-wise"):
        heads2, neurons2 = structure_flags(model, structured_masks(model, m_e2, 0.5, 0.5,
                                                                   sorting, "magnitude"))
        for blk1, blk2 in zip(heads1 + neurons1, heads2 + neurons2):
            assert all(k1 or not k2 for k1, k2 in zip(blk1, blk2)), "a pruned structure came back"
        if sorting == "global":
            assert sum(map(sum, heads2)) == max(1, int(sum(map(sum, heads1)) * 0.5))
            assert sum(map(sum, neurons2)) == max(1, int(sum(map(sum, neurons1)) * 0.5))
        else:
            assert [sum(h) for h in heads2] == [max(1, int(sum(h) * 0.5)) if sum(h) else 0
                                                for h in heads1]


# --------------------------------------------------------------------------- apply_masks
def head_masks(model, heads=None, neurons=None):
    return loop_masks(model, heads or {0: [1], 2: [0, 3]}, neurons or {1: range(0, 256, 3)})


def pruned_values(model, masks):
    return torch.cat([model.get_submodule(n).weight.detach()[m == 0] for n, m in masks.items()])


def kept_values(model, masks):
    return torch.cat([model.get_submodule(n).weight.detach()[m != 0] for n, m in masks.items()])


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


# --------------------------------------------------------------------------- report
def test_sparsity_report(tiny_vit):
    model = tiny_vit()
    masks = loop_masks(model, {0: [1]}, {2: range(64)})
    from_masks = sparsity_report(model, masks)
    apply_masks(model, masks)
    applied = sparsity_report(model)
    remove_masks(model)
    from_zeros = sparsity_report(model)
    for r in (from_masks, applied, from_zeros):
        assert r.to_dict() == from_masks.to_dict()
    r = from_masks
    assert r.zeros == zeros_of(masks) == 3 * 16 * 64 + 64 * 16 + 64 * (64 + 64)
    assert r.total == 3 * (3 * 64 * 64 + 64 * 64 + 2 * 64 * 256)
    b0, b1, b2 = r.layers
    assert (b0.attn_sparsity, b0.heads_kept, b0.heads_total) == (25.0, 3, 4)
    assert (b0.mlp_sparsity, b0.neurons_kept) == (0.0, 256)
    assert (b1.attn_sparsity, b1.mlp_sparsity, b1.heads_kept) == (0.0, 0.0, 4)
    assert (b2.mlp_sparsity, b2.neurons_kept, b2.neurons_total) == (25.0, 192, 256)
    assert (r.heads_kept, r.heads_total, r.neurons_kept) == (11, 12, 768 - 64)
    assert r.sparsity == pytest.approx(100 * r.zeros / r.total)
    json.dumps(r.to_dict())
    assert "11/12" in str(r)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("arg", ["head_ratio", "mlp_ratio"])
@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5, float("nan"), float("inf")])
def test_ratio_out_of_range(tiny_vit, arg, value):
    with pytest.raises(ValueError, match=rf"{arg} must be in \[0, 1\)"):
        structured_masks(tiny_vit(), None, **{arg: value})


@pytest.mark.parametrize("arg", ["head_ratio", "mlp_ratio"])
@pytest.mark.parametrize("value", ["0.3", None, True, [0.3], torch.tensor(0.3)])
def test_ratio_not_a_number(tiny_vit, arg, value):
    with pytest.raises(TypeError, match=rf"{arg} must be a number"):
        structured_masks(tiny_vit(), None, **{arg: value})


@pytest.mark.parametrize("value, exc", [(1.0, ValueError), (-0.5, ValueError),
                                        ("0.3", TypeError), (None, TypeError)])
def test_rate_is_checked(tiny_vit, value, exc):
    with pytest.raises(exc, match="rate must"):
        elementwise_masks(tiny_vit(), value)


def test_unknown_criterion_and_sorting_list_the_valid_ones(tiny_vit):
    with pytest.raises(ValueError, match="criterion") as err:
        structured_masks(tiny_vit(), None, criterion="taylor")
    assert all(repr(c) in str(err.value) for c in CRITERIA) and "'taylor'" in str(err.value)
    with pytest.raises(ValueError, match="sorting") as err:
        structured_masks(tiny_vit(), None, sorting="layerwise")
    assert "'global'" in str(err.value) and "'layer-wise'" in str(err.value)


@pytest.mark.parametrize("criterion", ["l1", "l2", "saliency"])
def test_activation_criterion_needs_calib(tiny_vit, criterion):
    with pytest.raises(ValueError, match=rf"{criterion}.*calib"):
        structured_masks(tiny_vit(), None, criterion=criterion)
    with pytest.raises(ValueError, match="calib yielded no batches"):
        structured_masks(tiny_vit(), None, criterion=criterion, calib=[])
    with pytest.raises(TypeError, match=r"calib must yield \(images, labels\)"):
        structured_masks(tiny_vit(), None, criterion=criterion, calib=[torch.zeros(2, 3, 32, 32)])


@pytest.mark.parametrize("call, arg", [
    (lambda m, k: structured_masks(m, k), "m_e"),
    (lambda m, k: elementwise_masks(m, 0.3, masks=k), "masks"),
    (lambda m, k: apply_masks(m, k), "masks"),
    (lambda m, k: sparsity_report(m, k), "masks"),
])
def test_bad_masks(tiny_vit, call, arg):
    model = tiny_vit()
    good = head_masks(model)
    wrong_shape = {**good, "blocks.1.mlp.fc1": torch.ones(10, 64)}
    with pytest.raises(ValueError, match=rf"{arg}\['blocks.1.mlp.fc1'\] has shape \(10, 64\)"):
        call(model, wrong_shape)
    unknown = {**good, "blocks.7.mlp.fc1": torch.ones(256, 64)}
    with pytest.raises(ValueError, match=rf"{arg} has a mask for 'blocks.7.mlp.fc1'"):
        call(model, unknown)
    with pytest.raises(TypeError, match=rf"{arg}\['blocks.0.attn.qkv'\] must be a tensor"):
        call(model, {**good, "blocks.0.attn.qkv": 1})
    with pytest.raises(TypeError, match=rf"{arg} must be a dict"):
        call(model, [good])
    # masks made for another model (ViT width 32) are refused the same way
    other = loop_masks(tiny_vit(embed_dim=32), {0: [1]}, {})
    with pytest.raises(ValueError, match="belong to a different model"):
        call(model, other)
