"""engine.structure: finding the heads and neurons of a timm Vision Transformer."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.layers import GluMlp
from torch import nn

from engine.pruning import elementwise_masks, structured_masks
from engine.structure import vit_structure

pytestmark = pytest.mark.usefixtures("one_thread")


def test_vit_small_layout_matches_the_spec():
    s = vit_structure(timm.create_model("vit_small_patch16_224", pretrained=False))
    assert len(s) == 12
    assert s.total_weights == 21_233_664
    assert s.total_heads == 72 and s.total_neurons == 12 * 1536
    b = s.blocks[5]
    assert (b.index, b.prefix, b.num_heads, b.head_dim, b.dim, b.hidden) == (
        5, "blocks.5", 6, 64, 384, 1536)
    assert b.weights_per_head == 98_304 and b.weights_per_neuron == 768
    assert b.incoming_per_head == 3 * 64 * 384 and b.incoming_per_neuron == 384
    assert b.names == ("blocks.5.attn.qkv", "blocks.5.attn.proj", "blocks.5.mlp.fc1",
                       "blocks.5.mlp.fc2")
    assert s.names[0] == "blocks.0.attn.qkv" and s.names[-1] == "blocks.11.mlp.fc2"
    assert list(s.linears()) == s.names


def test_head_views_index_the_head_on_dim_1(tiny_vit):
    b = vit_structure(tiny_vit()).blocks[0]
    H, D, C = b.num_heads, b.head_dim, b.dim
    rows = torch.arange(3 * H * D).view(-1, 1).expand(3 * H * D, C)
    view = b.qkv_heads(rows)
    for s in range(3):
        for h in range(H):
            # timm: qkv output = (3, num_heads, head_dim); head h of q/k/v s is this row range
            assert torch.equal(view[s, h, :, 0], torch.arange(s * H * D + h * D,
                                                              s * H * D + (h + 1) * D))
    cols = torch.arange(H * D).view(1, -1).expand(C, H * D)
    pview = b.proj_heads(cols)
    for h in range(H):
        assert torch.equal(pview[0, h], torch.arange(h * D, (h + 1) * D))


def test_custom_head_dim_is_supported(tiny_vit):
    # timm's Attention may use attn_head_dim != dim / num_heads: proj then takes H*D inputs
    model = tiny_vit()
    from timm.layers import Attention
    model.blocks[1].attn = Attention(64, num_heads=4, attn_head_dim=8, qkv_bias=True)
    b = vit_structure(model).blocks[1]
    assert (b.num_heads, b.head_dim) == (4, 8)
    assert b.weights_per_head == 3 * 8 * 64 + 64 * 8


class NotAViT(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))


@pytest.mark.parametrize("call", [
    lambda m: vit_structure(m),
    lambda m: elementwise_masks(m, 0.3),
    lambda m: structured_masks(m, None),
])
def test_model_without_blocks_names_the_class_and_what_is_missing(call):
    with pytest.raises(ValueError, match=r"NotAViT.*blocks") as err:
        call(NotAViT())
    assert "attn.qkv" in str(err.value) and "model" in str(err.value)


def test_empty_blocks_is_rejected():
    m = NotAViT()
    m.blocks = nn.Sequential()
    with pytest.raises(ValueError, match="NotAViT has no ViT blocks"):
        vit_structure(m)


def test_block_missing_a_layer_is_named(tiny_vit):
    model = tiny_vit()
    model.blocks[2].mlp.fc2 = nn.Identity()
    with pytest.raises(ValueError, match=r"VisionTransformer\.blocks\[2\].*mlp\.fc2"):
        vit_structure(model)


def test_not_a_module_is_a_type_error():
    with pytest.raises(TypeError, match="model: expected a torch.nn.Module"):
        vit_structure({"blocks": []})


@pytest.mark.parametrize("overrides, needle", [
    (dict(mlp_layer=GluMlp), "gated/GLU MLP"),
    (dict(scale_attn_norm=True), "scale_norm"),
    (dict(scale_mlp_norm=True), "scale_mlp_norm"),
])
def test_unsupported_block_variants_are_explained(tiny_vit, overrides, needle):
    with pytest.raises(ValueError, match=needle):
        vit_structure(tiny_vit(**overrides))
