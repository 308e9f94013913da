"""The part each Linear of a transformer block plays (qkv, proj, fc1, fc2, other), measured on a forward
pass: on timm and torchvision ViTs before and after canonization, Swin, LeViT (batch-normed Linears,
an activation on the attention's output) and a user's own block with a hand-written softmax attention,
a ReLU MLP and a gated MLP; and the groups ``{blocks: K, sublayers: true}`` builds from them."""

from __future__ import annotations

import warnings
from collections import Counter

import pytest
import torch
from torch import nn

from xaiopt.canonize import canonize
from xaiopt.config import BlockGroups
from xaiopt.errors import ConfigError
from xaiopt.space import resolve_groups
from xaiopt.space.groups import forward_order
from xaiopt.space.sublayers import sublayer_kinds

timm = pytest.importorskip("timm")


def _kinds(model, size):
    model = model.eval()
    x = torch.randn(1, 3, size, size)
    return sublayer_kinds(model, x, forward_order(model, x))


def _canonized(model, size):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return canonize(model.eval(), torch.randn(2, 3, size, size))[0]


def _tiny_timm_vit():
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2)


def test_timm_vit_before_and_after_canonization():
    kinds = _kinds(_tiny_timm_vit(), 32)
    assert kinds == {"patch_embed.proj": "other", "head": "other",
                     **{f"blocks.{i}.{n}": k for i in range(2)
                        for n, k in (("attn.qkv", "qkv"), ("attn.proj", "proj"), ("mlp.fc1", "fc1"),
                                     ("mlp.fc2", "fc2"))}}
    twin = _kinds(_canonized(_tiny_timm_vit(), 32), 32)
    assert {n: k for n, k in twin.items() if ".qkv." in n} == {
        f"blocks.{i}.attn.qkv.{p}": "qkv" for i in range(2) for p in "qkv"}
    assert twin["blocks.1.attn.proj"] == "proj" and twin["blocks.1.mlp.fc2"] == "fc2"


def test_torchvision_vit_projections_are_found_once_they_are_modules():
    import torchvision

    model = torchvision.models.vit_b_16(image_size=32)
    # uncanonized, nn.MultiheadAttention runs its projections outside modules: only the MLP is seen
    assert Counter(_kinds(model, 32).values()) == {"fc1": 12, "fc2": 12, "other": 2}
    twin = _kinds(_canonized(model, 32), 32)
    assert Counter(twin.values()) == {"qkv": 36, "proj": 12, "fc1": 12, "fc2": 12, "other": 2}
    assert twin["encoder.layers.encoder_layer_3.self_attention.out_proj"] == "proj"
    assert twin["encoder.layers.encoder_layer_3.mlp.0"] == "fc1"


def test_swin_and_levit():
    swin = _kinds(timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=56,
                                    depths=(1, 1, 1, 1)), 56)
    assert Counter(swin.values()) == {"qkv": 4, "proj": 4, "fc1": 4, "fc2": 4, "other": 5}
    assert swin["layers.1.downsample.reduction"] == "other"
    levit = _kinds(timm.create_model("levit_128s", pretrained=False, img_size=64), 64)
    # Linear -> BatchNorm1d over token rows, an attention output through hardswish before its projection
    assert levit["stages.0.blocks.0.attn.qkv.linear"] == "qkv"
    assert levit["stages.0.blocks.0.attn.proj.ln.linear"] == "proj"
    assert levit["stages.0.blocks.0.mlp.ln1.linear"] == "fc1" and levit["stages.0.blocks.0.mlp.ln2.linear"] == "fc2"
    assert levit["stages.1.downsample.attn_downsample.q.ln.linear"] == "qkv"
    assert levit["stem.conv1.linear"] == "other"


class OwnBlock(nn.Module):
    """A user's block with its own forward: separate q/k/v, a hand-written softmax attention, a ReLU MLP
    and a gated (SwiGLU-style) MLP."""

    def __init__(self, dim=8, heads=2):
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))
        self.up, self.down = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)
        self.gate, self.value, self.back = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        h = self.norm(x)
        q, k, v = (t.view(b, n, self.heads, -1).transpose(1, 2) for t in (self.q(h), self.k(h), self.v(h)))
        weights = torch.softmax(q @ k.transpose(-2, -1) / (d // self.heads) ** 0.5, dim=-1)
        x = x + self.out((weights @ v).transpose(1, 2).reshape(b, n, d))
        x = x + self.down(torch.relu(self.up(self.norm(x))))
        return x + self.back(nn.functional.silu(self.gate(x)) * self.value(x))


class OwnModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 4, 4)
        self.blocks = nn.Sequential(OwnBlock(), OwnBlock())
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.blocks(self.embed(x).flatten(2).transpose(1, 2)).mean(1))


def test_a_users_own_block():
    kinds = _kinds(OwnModel(), 8)
    expected = {"q": "qkv", "k": "qkv", "v": "qkv", "out": "proj", "up": "fc1", "down": "fc2", "gate": "fc1",
                "value": "fc1", "back": "fc2"}
    assert kinds == {"embed": "other", "head": "other",
                     **{f"blocks.{i}.{n}": k for i in range(2) for n, k in expected.items()}}


def test_block_groups_by_depth_and_sublayer():
    model = OwnModel().eval()
    x = torch.randn(1, 3, 8, 8)
    layers = resolve_groups(model, x, BlockGroups(blocks=2))
    assert layers.transformer and list(layers.groups) == BlockGroups(blocks=2).names()
    assert layers.groups["blocks1_qkv"] == ["blocks.0.q", "blocks.0.k", "blocks.0.v"]
    assert layers.groups["blocks2_fc1"] == ["blocks.1.up", "blocks.1.gate", "blocks.1.value"]
    assert layers.groups["blocks1_other"] == ["embed"] and layers.groups["head"] == ["head"]
    one = resolve_groups(model, x, BlockGroups(blocks=1))
    assert list(one.groups) == ["qkv", "proj", "fc1", "fc2", "other", "head"]
    assert one.groups["proj"] == ["blocks.0.out", "blocks.1.out"]
    by_depth = resolve_groups(model, x, BlockGroups(blocks=2, sublayers=False))
    assert by_depth.groups == resolve_groups(model, x, 2).groups
    # every layer is in exactly one group
    members = [n for g in layers.groups.values() for n in g]
    assert sorted(members) == sorted(forward_order(model, x))


def test_block_groups_on_a_cnn_is_one_clear_error():
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2)).eval()
    with pytest.raises(ConfigError, match="runs no attention"):
        resolve_groups(cnn, torch.randn(1, 3, 8, 8), BlockGroups(blocks=1))


def test_blocks_are_the_containers_children_not_a_blocks_own_layers():
    """A 2-layer canonized torchvision ViT: its attention has 4 Linear children (q, k, v, out), more than
    the 2 blocks; the blocks are still encoder.layers' children."""
    from torchvision.models.vision_transformer import VisionTransformer

    model = VisionTransformer(image_size=16, patch_size=8, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16,
                              num_classes=3)
    twin = _canonized(model, 16)
    layers = resolve_groups(twin, torch.randn(1, 3, 16, 16), 2)
    assert layers.groups["blocks1"][0] == "conv_proj"
    assert all(n.startswith("encoder.layers.encoder_layer_0.") for n in layers.groups["blocks1"][1:])
    assert all(n.startswith("encoder.layers.encoder_layer_1.") for n in layers.groups["blocks2"])
    assert len(layers.groups["blocks2"]) == 6 and layers.groups["head"] == ["heads.head"]
