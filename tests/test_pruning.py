"""engine.pruning: element-wise and structured selection, keep counts, the sparsity report.

Golden numbers (docs/algorithm.md) on ViT-S/16 at random init; everything else on a tiny ViT
against straightforward loop-based reference implementations. Criteria: test_criteria.py;
keeping masks in force: test_masks.py.
"""

from __future__ import annotations

import json

import pytest
import timm
import torch

from engine.pruning import (apply_masks, elementwise_masks, remove_masks, sparsity_report,
                            structured_masks)
from engine.structure import vit_structure
from helpers.pruning import (geometry, head_masks, head_rows, loop_masks, randomize,
                             structure_flags, zeros_of)

pytestmark = pytest.mark.usefixtures("one_thread")

CRITERIA = ("remain", "magnitude", "l1", "l2", "saliency")


# --------------------------------------------------------------------------- golden numbers
@pytest.fixture(scope="module")
def vit_s():
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch16_224", pretrained=False).eval()
    m_e = elementwise_masks(model, rate=0.3)
    return model, m_e


TOTAL_S = 21_233_664  # 12 × (442,368 + 147,456 + 589,824 + 589,824)


def test_golden_elementwise(vit_s):
    model, m_e = vit_s
    assert set(m_e) == set(vit_structure(model).names)
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
    names = vit_structure(model).names
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
        for lin in vit_structure(model).linears().values():
            lin.weight.fill_(0.5)
    m_e = elementwise_masks(model, rate=0.5)
    got = torch.cat([m_e[n].flatten() for n in vit_structure(model).names])
    k = int(0.5 * got.numel())
    assert torch.equal(got, torch.cat([torch.zeros(k), torch.ones(got.numel() - k)]))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_elementwise_refuses_non_finite_weights(tiny_vit, bad):
    model = tiny_vit()
    with torch.no_grad():
        model.blocks[1].mlp.fc2.weight[3, 7] = bad
    with pytest.raises(ValueError, match=r"model: the weights of blocks\.1\.mlp\.fc2 hold NaN "
                                         r"or inf"):
        elementwise_masks(model, 0.3)
    # a non-finite weight that is already pruned is not looked at
    prev = {"blocks.1.mlp.fc2": torch.ones_like(model.blocks[1].mlp.fc2.weight)}
    prev["blocks.1.mlp.fc2"][3, 7] = 0
    m_e = elementwise_masks(model, 0.3, masks=prev)
    assert m_e["blocks.1.mlp.fc2"][3, 7] == 0


def test_elementwise_rate_zero_keeps_previous_masks(tiny_vit):
    model = tiny_vit()
    prev = elementwise_masks(model, rate=0.3)
    again = elementwise_masks(model, rate=0.0, masks=prev)
    assert all(torch.equal(again[n], prev[n]) for n in prev)


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
