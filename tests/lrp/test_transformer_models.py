"""Transformer families from third-party code (timm, torchvision), random weights, float64: what runs
on the input's path is covered by a rule (measured by the census on a forward pass) or the model is
refused by name; the canonized twin keeps the logits; the explanation is finite and conserves the
logit under CP-LRP up to what biases and constants absorb."""

from __future__ import annotations

import warnings

import pytest
import torch

from xaiopt.canonize import canonize
from xaiopt.canonize.census import census
from xaiopt.lrp import LrpExplainer, operation_census
from xaiopt.space import ExplainerSpec, GroupRule, resolve_groups

timm = pytest.importorskip("timm")


def _timm(name, **kw):
    return lambda: timm.create_model(name, pretrained=False, **kw)


def _torchvision(name, **kw):
    import torchvision

    return lambda: getattr(torchvision.models, name)(**kw)


# name, builder, input size, the census's rule kinds that must appear
MODELS = [
    ("vit", _timm("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2), 32,
     {"scaled_dot_product_attention", "layer_norm", "activation gelu"}),
    ("deit_distilled", _timm("deit_tiny_distilled_patch16_224", img_size=32, patch_size=8, depth=2), 32,
     {"scaled_dot_product_attention", "layer_norm"}),
    ("dinov2_registers_layerscale", _timm("vit_small_patch14_reg4_dinov2", img_size=28, depth=2), 28,
     {"scaled_dot_product_attention", "layer_norm"}),
    ("clip_prenorm", _timm("vit_base_patch16_clip_224", img_size=32, patch_size=8, depth=2), 32,
     {"scaled_dot_product_attention", "layer_norm"}),
    ("torchvision_vit_b_16", _torchvision("vit_b_16", image_size=32), 32, {"multi_head_attention", "layer_norm"}),
    ("levit", _timm("levit_128s", img_size=64), 64, {"softmax", "product of two input-dependent tensors"}),
    ("mobilevit", _timm("mobilevit_xxs"), 64, {"scaled_dot_product_attention", "layer_norm"}),
    ("swin", _timm("swin_tiny_patch4_window7_224", img_size=56, depths=(1, 1, 1, 1)), 56,
     {"softmax", "product of two input-dependent tensors"}),
]


def _random(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1 or name.endswith(("cls_token", "pos_embed", "reg_token", "dist_token", "class_token")):
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) / max(p[0].numel(), 1) ** 0.5)
        for m in model.modules():  # batch norms of hybrids: statistics that matter
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g, dtype=m.running_mean.dtype) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g, dtype=m.running_var.dtype) + 0.5)
    return model


@pytest.mark.parametrize("name,build,size,kinds", MODELS, ids=[m[0] for m in MODELS])
def test_transformer_family_is_covered_canonized_and_explained(name, build, size, kinds):
    torch.manual_seed(0)
    model = _random(build().double().eval())
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    found = operation_census(model, x)
    assert found.uncovered == [], found.uncovered
    assert kinds <= set(found.counts), found.counts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        twin, report = canonize(model, x)
    y0, y1 = model(x), twin(x)
    assert ((y1 - y0).norm() / y0.norm()) <= 1e-10, report
    # what the report says is what a forward pass measures
    assert report.remaining_batch_norms == census(twin, x[:1]).batch_norms
    if report.canonized:
        assert not census(twin, x[:1]).batch_norms and not census(twin, x[:1]).unhooked
    layers = resolve_groups(twin, x[:1], 2)
    assert layers.transformer
    targets = y0.argmax(1)
    for attention in ("attnlrp", "cp"):
        spec = ExplainerSpec(canonize=True, first_layer="same", attention=attention,
                             groups={g: GroupRule("gamma", 0.1) for g in layers.groups})
        relevance = LrpExplainer(spec, twin, layers, low=None, high=None, batch_budget=2)(x, targets)
        assert relevance.shape == (2, 1, size, size)
        assert torch.isfinite(relevance).all() and relevance.abs().sum() > 0


def test_linear_attention_with_a_normalizing_division_is_refused_by_name():
    # EfficientViT's linear attention divides by an input-dependent sum: no rule covers it
    model = timm.create_model("efficientvit_b0", pretrained=False).double().eval()
    found = operation_census(model, torch.randn(1, 3, 64, 64, dtype=torch.float64))
    assert found.uncovered and all(u.startswith("div in stages.") for u in found.uncovered), found.uncovered
