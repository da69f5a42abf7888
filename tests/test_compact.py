"""engine.compact (physically removing pruned heads and neurons), engine.artifact (saving,
loading, torch.export) and engine.measure (sizes and latency, never touching the caller's model).

Small custom ViTs (32 px, patch 8 → 17 tokens, width 64, 4 heads of 16, 3 blocks) keep this
fast (``compact_helpers``). Expected sizes are worked out from the shapes by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from helpers.compact import (C_, HID, SPEC, TOL, H, D, X, hand_masks, make_model, masked, out,
                             set_fused, vit_macs, vit_params)
from torch import nn

from timm.layers import Attention, GluMlp

from engine import artifact as A
from engine import compact as C
from engine import measure as M
from engine.pruning import elementwise_masks, structured_masks


def engine_masks(model, sorting, ratio=0.5):
    return structured_masks(model, elementwise_masks(model, rate=ratio), head_ratio=ratio,
                            mlp_ratio=ratio, sorting=sorting, criterion="magnitude")


# ------------------------------------------------------------------------ equivalence

@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("sorting", ["global", "layer-wise"])
def test_engine_masks_equivalence(sorting, fused):
    model = make_model()
    set_fused(model, fused)
    masks = engine_masks(model, sorting)
    ref = masked(model, masks)
    small = C.compact(ref, masks)
    kept = C.kept_from_masks(model, masks)
    assert kept.heads_kept < kept.heads_total and kept.neurons_kept < kept.neurons_total
    if sorting == "layer-wise":
        assert {len(b.heads_kept) for b in kept.blocks} == {H // 2}
    assert C.kept_of(small) == [(len(b.heads_kept), len(b.neurons_kept)) for b in kept.blocks]
    assert all(blk.attn.fused_attn is fused for blk in small.blocks
               if isinstance(blk.attn, Attention))
    # the pruned parameters are really gone
    per_block = [(len(b.heads_kept), len(b.neurons_kept)) for b in kept.blocks]
    assert M.count_params(small) == vit_params(per_block) < vit_params([(H, HID)] * 3)
    assert sum(p.numel() for p in small.state_dict().values()) == vit_params(per_block)
    diff = (out(ref, X) - out(small, X)).abs().max().item()
    assert diff < TOL, diff
    # and the check is not vacuous: the dense (unmasked) model answers differently
    assert (out(model, X) - out(small, X)).abs().max().item() > 1e-2


@pytest.mark.parametrize("fused", [True, False])
def test_whole_block_pruned_heads_and_mlp(fused):
    """All heads of block 1 and all neurons of block 2: residual + proj / fc2 bias only."""
    model = make_model(init_values=0.5)          # LayerScale must still scale the bias
    set_fused(model, fused)
    masks = hand_masks(model, heads={1: [0, 1, 2, 3], 0: [2]}, neurons={2: list(range(HID)),
                                                                        0: [5, 7]})
    ref = masked(model, masks)
    small = C.compact(ref, masks)
    assert isinstance(small.blocks[1].attn, C.HeadlessAttention)
    assert isinstance(small.blocks[2].mlp, C.NeuronlessMlp)
    assert C.kept_of(small) == [(3, HID - 2), (0, HID), (H, 0)]
    assert "blocks.1.attn.proj.bias" in small.state_dict()
    assert isinstance(small.blocks[1].norm1, nn.Identity)       # fed only the removed heads
    assert isinstance(small.blocks[2].norm2, nn.Identity)
    assert not any(k.startswith("blocks.1.attn.qkv") for k in small.state_dict())
    assert (out(ref, X) - out(small, X)).abs().max().item() < TOL
    # the bias is really used: zeroing it changes the output
    with torch.no_grad():
        small.blocks[1].attn.proj.bias.zero_()
    assert (out(ref, X) - out(small, X)).abs().max().item() > 1e-3


def test_post_norm_blocks():
    """ResPostBlock normalises the attn/mlp *output*: its norms must stay."""
    from timm.models.vision_transformer import ResPostBlock

    model = make_model(block_fn=ResPostBlock)
    masks = hand_masks(model, heads={0: [0, 1, 2, 3], 1: [2]}, neurons={0: list(range(HID))})
    ref = masked(model, masks)
    small = C.compact(ref, masks)
    assert isinstance(small.blocks[0].norm1, nn.LayerNorm)
    assert (out(ref, X) - out(small, X)).abs().max().item() < TOL


def test_non_contiguous_head_rows():
    """Head 1's q, k and v rows are three separate slices of the fused qkv weight."""
    model = make_model()
    masks = hand_masks(model, heads={0: [1]})
    small = C.compact(model, masks)
    w = model.blocks[0].attn.qkv.weight
    keep_rows = [r for s in range(3) for h in (0, 2, 3) for r in range(s * H * D + h * D,
                                                                       s * H * D + (h + 1) * D)]
    assert torch.equal(small.blocks[0].attn.qkv.weight, w[keep_rows])
    assert torch.equal(small.blocks[0].attn.qkv.bias, model.blocks[0].attn.qkv.bias[keep_rows])
    assert torch.equal(small.blocks[0].attn.proj.weight,
                       model.blocks[0].attn.proj.weight[:, [c for h in (0, 2, 3)
                                                            for c in range(h * D, h * D + D)]])
    a = small.blocks[0].attn
    assert (a.num_heads, a.head_dim, a.attn_dim) == (3, D, 3 * D)
    assert (out(masked(model, masks), X) - out(small, X)).abs().max().item() < TOL


@pytest.mark.parametrize("fused", [True, False])
def test_qk_norm_model(fused):
    model = make_model(qk_norm=True)
    set_fused(model, fused)
    assert not isinstance(model.blocks[0].attn.q_norm, nn.Identity)
    masks = engine_masks(model, "global")
    ref = masked(model, masks)
    small = C.compact(ref, masks)
    assert (out(ref, X) - out(small, X)).abs().max().item() < TOL


def test_compact_leaves_the_input_model_alone():
    model = make_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    C.compact(model, hand_masks(model, heads={0: [0]}, neurons={1: [3]}))
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.blocks[0].attn.num_heads == H


# ------------------------------------------------------------------------ training

@pytest.mark.parametrize("fused", [True, False])
def test_train_step_matches_masked_training(fused):
    """One SGD step on the compacted model = one step on the masked model (stale
    num_heads/head_dim would break the forward or the gradients)."""
    model = make_model()
    set_fused(model, fused)
    masks = hand_masks(model, heads={0: [1, 3], 1: [0, 1, 2, 3]},
                       neurons={0: list(range(0, HID, 3)), 2: list(range(HID))})
    ref = masked(model, masks).train()
    small = C.compact(ref, masks).train()
    y = torch.tensor([1, 4, 7])
    for net in (ref, small):
        opt = torch.optim.SGD(net.parameters(), lr=0.05)
        loss = nn.functional.cross_entropy(net(X), y)
        loss.backward()
        assert all(p.grad is not None for p in net.parameters())
        opt.step()
    assert small.blocks[0].attn.qkv.weight.grad.shape == (3 * 2 * D, C_)
    ref.eval(), small.eval()
    assert (out(ref, X) - out(small, X)).abs().max().item() < TOL
    assert (out(model, X) - out(small, X)).abs().max().item() > 1e-3   # it did train


# ------------------------------------------------------------------------ bad input

def test_partial_head_is_a_mismatch():
    model = make_model()
    masks = hand_masks(model)
    masks["blocks.2.attn.qkv"][2 * H * D + 3 * D] = 0        # one v row of head 3
    with pytest.raises(ValueError, match=r"masks/model mismatch: block 2 head 3 is only partly"):
        C.compact(model, masks)


def test_partial_neuron_is_a_mismatch():
    model = make_model()
    masks = hand_masks(model)
    masks["blocks.1.mlp.fc1"][17] = 0                        # fc1 row cut, fc2 column kept
    with pytest.raises(ValueError, match=r"block 1 neuron 17 is only partly"):
        C.compact(model, masks)


def test_wrong_shape_or_name_is_a_mismatch():
    model = make_model()
    other = make_model(embed_dim=96, num_heads=6)
    with pytest.raises(ValueError, match=r"masks/model mismatch.*shape"):
        C.compact(model, hand_masks(other))
    with pytest.raises(ValueError, match=r"masks/model mismatch.*blocks.7.mlp.fc1"):
        C.compact(model, {"blocks.7.mlp.fc1": torch.ones(HID, C_)})


def test_missing_masks_keep_everything():
    model = make_model()
    masks = {k: v for k, v in hand_masks(model, heads={1: [2]}).items() if k.startswith("blocks.1")}
    small = C.compact(model, masks)
    assert C.kept_of(small) == [(H, HID), (H - 1, HID), (H, HID)]
    assert C.kept_of(C.compact(model, None)) == [(H, HID)] * 3


def test_bool_masks_accepted():
    model = make_model()
    masks = {k: v.bool() for k, v in hand_masks(model, heads={2: [0]}).items()}
    assert C.kept_of(C.compact(model, masks))[2] == (H - 1, HID)


def _gated(model):
    model.blocks[1].attn = Attention(C_, num_heads=H, qkv_bias=True, gated=True)
    return model


def _glu(model):
    model.blocks[2].mlp = GluMlp(C_, hidden_features=2 * HID)
    return model


class _MyAttention(Attention):
    pass


def _subclass(model):
    model.blocks[0].attn = _MyAttention(C_, num_heads=H, qkv_bias=True)
    return model


@pytest.mark.parametrize("build, match", [
    (lambda: make_model(scale_attn_norm=True), r"blocks\[0\].*scale_norm"),
    (lambda: make_model(scale_mlp_norm=True), r"blocks\[0\].*mlp normalises"),
    (lambda: _gated(make_model()), r"blocks\[1\].*gated"),
    (lambda: _glu(make_model()), r"blocks\[2\].*GLU"),
    (lambda: _subclass(make_model()), r"block 0: attention _MyAttention is not supported"),
])
def test_unsupported_variants_are_rejected(build, match):
    with pytest.raises(ValueError, match=match):
        C.compact(build(), None)


# ------------------------------------------------------------------------ size

def test_macs_and_params_match_the_analytic_count():
    model = make_model()
    masks = hand_masks(model, heads={0: [0, 1], 1: [0, 1, 2, 3]}, neurons={2: list(range(100))})
    small = C.compact(model, masks)
    assert M.count_macs(model) == vit_macs([(H, HID)] * 3)
    assert M.count_macs(small) == vit_macs([(2, HID), (0, HID), (H, HID - 100)])
    assert M.count_macs(small, batch=4) == 4 * vit_macs([(2, HID), (0, HID), (H, HID - 100)])
    assert M.count_params(model) == vit_params([(H, HID)] * 3)
    assert M.count_params(small) == vit_params([(2, HID), (0, HID), (H, HID - 100)])


def _snapshot(model):
    return (model.training, [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")],
            {n: (p.data_ptr(), p.device, p.requires_grad) for n, p in model.named_parameters()},
            {k: v.clone() for k, v in model.state_dict().items()})


def test_measurement_never_changes_the_callers_model():
    """Counting, timing and comparing work on copies: mode, attention path, device,
    parameter storage and values of the models given are the same afterwards."""
    model = make_model().train()
    set_fused(model, True)
    small = C.compact(model, hand_masks(model, heads={0: [1]})).train()
    before = [_snapshot(m) for m in (model, small)]
    M.count_macs(model)
    M.count_params(model)
    M.time_models({"a": model, "b": small}, 2, reps=1, warmup=1)
    M.max_abs_diff(model, small)
    M.max_abs_output(small)
    for m, (training, fused, params, state) in zip((model, small), before):
        now = _snapshot(m)
        assert (now[0], now[1], now[2]) == (training, fused, params)
        assert all(torch.equal(state[k], now[3][k]) for k in state)


def test_time_models_reports_every_repetition():
    model = make_model()
    t = M.time_models({"a": model, "b": C.compact(model, hand_masks(model, heads={0: [0]}))},
                      batch=2, reps=3, warmup=1)
    assert set(t) == {"a", "b"}
    for r in t.values():
        assert r["reps"] == 3 and r["batch"] == 2
        assert 0 < r["min_ms"] <= r["median_ms"] <= r["max_ms"]


# ------------------------------------------------------------------------ save / load / artifact

def test_save_load_roundtrip(tmp_path):
    model = make_model(init_values=0.3)
    masks = hand_masks(model, heads={0: [3], 1: [0, 1, 2, 3]}, neurons={2: list(range(HID)),
                                                                        0: [1, 2, 200]})
    ref = masked(model, masks)
    kept = A.save(ref, masks, tmp_path)
    doc = json.loads((tmp_path / A.STRUCTURE_FILE).read_text())
    assert doc["model_spec"] == SPEC | {"kwargs": {**SPEC["kwargs"], "init_values": 0.3}}
    assert doc["blocks"][0]["heads_kept"] == [0, 1, 2]
    assert doc["blocks"][1]["heads_kept"] == [] and doc["blocks"][2]["neurons_kept"] == []
    assert (doc["heads_kept"], doc["neurons_kept"]) == (kept.heads_kept, kept.neurons_kept)
    loaded = A.load(tmp_path)
    assert C.kept_of(loaded) == [(3, HID - 3), (0, HID), (H, 0)]
    assert (out(ref, X) - out(loaded, X)).abs().max().item() < TOL
    # saving the already-compacted model with its Kept gives the same files' content
    A.save(C.compact(ref, masks), kept, tmp_path / "again", model_spec=model.model_spec)
    again = A.load(tmp_path / "again")
    assert torch.equal(out(loaded, X), out(again, X))


def test_save_rejects_a_model_of_another_shape(tmp_path):
    model = make_model()
    kept = C.kept_from_masks(model, hand_masks(model, heads={0: [1]}))
    other = C.compact(model, hand_masks(model, heads={0: [1, 2]}))
    with pytest.raises(ValueError, match="masks/model mismatch"):
        A.save(other, kept, tmp_path)


BLOCK_IMPORTS = textwrap.dedent("""
    import sys, importlib.abc
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tuiprune", "engine", "timm"):
                raise ImportError("blocked for this test: " + name)
            return None
    sys.meta_path.insert(0, Block())
    for mod in ("tuiprune", "engine", "timm"):
        try:
            __import__(mod)
        except ImportError:
            pass
        else:
            raise SystemExit(mod + " is importable")
""")


def test_program_runs_without_tuiprune_or_timm(tmp_path):
    model = make_model()
    masks = hand_masks(model, heads={0: [0, 2], 2: [0, 1, 2, 3]}, neurons={1: list(range(HID))})
    small = C.compact(masked(model, masks), masks)
    small.train()
    A.export_program(small, tmp_path / "model.pt2", X[:2])
    assert small.training                   # exported from an eval-mode copy
    x5 = torch.randn(5, 3, 32, 32)
    torch.save(x5, tmp_path / "x.pt")
    script = BLOCK_IMPORTS + textwrap.dedent("""
        import torch
        program = torch.export.load(sys.argv[1] + "/model.pt2").module()
        x = torch.load(sys.argv[1] + "/x.pt")
        torch.save({"b5": program(x), "b1": program(x[:1])}, sys.argv[1] + "/y.pt")
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    y = torch.load(tmp_path / "y.pt")
    ref = out(small.eval(), x5)
    assert (y["b5"] - ref).abs().max().item() < TOL
    assert (y["b1"] - ref[:1]).abs().max().item() < TOL
