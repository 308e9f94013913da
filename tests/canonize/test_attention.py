"""Canonization of attention (xaiopt/canonize/attention.py), measured by running: fused projections
become Linear modules, the twin computes the same logits, and two implementations of one ViT
(timm and torchvision, same weights) get one explanation once canonized."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from xaiopt.canonize import canonize
from xaiopt.canonize.attention import SplitQKV, UnfusedMultiheadAttention
from xaiopt.canonize.census import census
from xaiopt.lrp import LrpExplainer
from xaiopt.space import ExplainerSpec, GroupRule, resolve_groups

timm = pytest.importorskip("timm")

DIM, DEPTH, HEADS, MLP, CLASSES, PATCH, SIZE = 32, 3, 4, 64, 6, 8, 32


def _torchvision_vit():
    from torchvision.models.vision_transformer import VisionTransformer

    return VisionTransformer(image_size=SIZE, patch_size=PATCH, num_layers=DEPTH, num_heads=HEADS, hidden_dim=DIM,
                             mlp_dim=MLP, num_classes=CLASSES).double().eval()


def _timm_vit():
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=SIZE, patch_size=PATCH, embed_dim=DIM, depth=DEPTH, num_heads=HEADS,
                             mlp_ratio=MLP / DIM, num_classes=CLASSES).double().eval()


def _randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=p.dtype)
            if p.dim() == 1 and not name.endswith("bias"):
                p.copy_(1.0 + 0.2 * noise)  # LayerNorm weights
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            else:
                p.copy_(noise / max(p[0].numel(), 1) ** 0.5)
    return model


def _copy_timm_into_torchvision(src, dst):
    """The same weights in torchvision's layout (mapping written out by hand)."""
    with torch.no_grad():
        dst.conv_proj.weight.copy_(src.patch_embed.proj.weight)
        dst.conv_proj.bias.copy_(src.patch_embed.proj.bias)
        dst.class_token.copy_(src.cls_token)
        dst.encoder.pos_embedding.copy_(src.pos_embed)
        for i, block in enumerate(src.blocks):
            layer = getattr(dst.encoder.layers, f"encoder_layer_{i}")
            pairs = [(layer.ln_1, block.norm1), (layer.ln_2, block.norm2), (layer.mlp[0], block.mlp.fc1),
                     (layer.mlp[3], block.mlp.fc2), (layer.self_attention.out_proj, block.attn.proj)]
            for a, b in pairs:
                a.weight.copy_(b.weight)
                a.bias.copy_(b.bias)
            layer.self_attention.in_proj_weight.copy_(block.attn.qkv.weight)
            layer.self_attention.in_proj_bias.copy_(block.attn.qkv.bias)
        dst.encoder.ln.weight.copy_(src.norm.weight)
        dst.encoder.ln.bias.copy_(src.norm.bias)
        dst.heads.head.weight.copy_(src.head.weight)
        dst.heads.head.bias.copy_(src.head.bias)
    return dst


@pytest.fixture(scope="module")
def pair():
    timm_model = _randomize(_timm_vit(), 0)
    tv_model = _copy_timm_into_torchvision(timm_model, _torchvision_vit())
    x = torch.randn(3, 3, SIZE, SIZE, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return timm_model, tv_model, x


def _twin(model, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return canonize(model, x[:2])


def test_the_two_implementations_compute_the_same_logits(pair):
    timm_model, tv_model, x = pair
    a, b = timm_model(x), tv_model(x)
    assert (a - b).abs().max() <= 1e-12 * a.abs().max()


def test_torchvision_attention_becomes_linear_modules_and_keeps_the_logits(pair):
    _, tv_model, x = pair
    # measured on a forward pass: the model's projections run outside any module
    assert len(census(tv_model, x[:1]).unhooked) == 4 * DEPTH
    twin, report = _twin(tv_model, x)
    assert report.canonized, report.reason
    assert report.counts()["attention_unfused"] == DEPTH
    assert sum(isinstance(m, UnfusedMultiheadAttention) for m in twin.modules()) == DEPTH
    assert census(twin, x[:1]).unhooked == [] and report.unhooked_layers == []
    y0, y1 = tv_model(x), twin(x)
    assert ((y1 - y0).norm() / y0.norm()) <= 1e-10
    # both ways of calling nn.MultiheadAttention (with and without the weights) are the same function
    mha = tv_model.encoder.layers.encoder_layer_0.self_attention
    unfused = UnfusedMultiheadAttention(mha)
    tokens = torch.randn(2, 5, DIM, dtype=torch.float64)
    for need in (False, True):
        out0, w0 = mha(tokens, tokens, tokens, need_weights=need)
        out1, w1 = unfused(tokens, tokens, tokens, need_weights=need)
        assert (out1 - out0).abs().max() <= 1e-12
        assert (w0 is None) == (w1 is None) and (w0 is None or (w1 - w0).abs().max() <= 1e-12)


def test_fused_qkv_is_split_and_keeps_the_logits(pair):
    timm_model, _, x = pair
    twin, report = _twin(timm_model, x)
    assert report.canonized and report.counts()["qkv_split"] == DEPTH
    assert sum(isinstance(m, SplitQKV) for m in twin.modules()) == DEPTH
    y0, y1 = timm_model(x), twin(x)
    assert ((y1 - y0).norm() / y0.norm()) <= 1e-10
    names = dict(twin.named_modules())
    assert isinstance(names["blocks.0.attn.qkv.q"], nn.Linear) and names["blocks.0.attn.qkv.q"].out_features == DIM


@pytest.mark.parametrize("attention", ["attnlrp", "cp"])
@pytest.mark.parametrize("rule,value", [("gamma", 0.25), ("epsilon", 0.01), ("zplus", None)])
def test_implementation_invariance_after_canonization(pair, attention, rule, value):
    # the seed paper's axiom on transformers: one function, one explanation, whichever library wrote it
    timm_model, tv_model, x = pair
    targets = torch.tensor([0, 3, 5])
    results = []
    for model in (timm_model, tv_model):
        twin, _ = _twin(model, x)
        layers = resolve_groups(twin, x[:1], 3)
        assert layers.transformer and sorted(layers.groups) == ["blocks1", "blocks2", "blocks3", "head"]
        spec = ExplainerSpec(canonize=True, first_layer="zbox", attention=attention,
                             groups={g: GroupRule(rule, value) for g in layers.groups})
        low, high = torch.full((1, 3, 1, 1), -4.0, dtype=x.dtype), torch.full((1, 3, 1, 1), 4.0, dtype=x.dtype)
        results.append(LrpExplainer(spec, twin, layers, low=low, high=high, batch_budget=3)(x, targets))
    a, b = results
    assert a.abs().max() > 0
    assert (a - b).abs().max() <= 1e-10 * b.abs().max()


def test_without_canonization_the_two_implementations_explain_differently(pair):
    # torchvision's projections run outside modules: no group rule reaches them (LRP-0 there), while
    # timm's qkv Linear takes the group's gamma; canonization is what makes the explanations agree
    timm_model, tv_model, x = pair
    targets = torch.tensor([0, 3, 5])
    results = []
    for model in (timm_model, tv_model):
        layers = resolve_groups(model, x[:1], 3)
        spec = ExplainerSpec(canonize=False, first_layer="same", attention="cp",
                             groups={g: GroupRule("gamma", 0.25) for g in layers.groups})
        results.append(LrpExplainer(spec, model, layers, low=None, high=None, batch_budget=3)(x, targets))
    a, b = results
    assert (a - b).abs().max() > 1e-3 * b.abs().max()
