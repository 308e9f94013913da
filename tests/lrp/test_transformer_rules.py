"""The engine's transformer rules (xaiopt/lrp/attention.py) against hand-computed AttnLRP / CP-LRP
formulas in the relevance frame, conservation, the cache, and the census, in float64."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from xaiopt.lrp import LrpExplainer, operation_census, shared_cache
from xaiopt.space import ExplainerSpec, GroupRule, LayerGroups

NO_GROUPS = LayerGroups(groups={}, first_layer=None, transformer=True)


def explain(model, x, targets, attention, layers=NO_GROUPS, groups=None, cache=None):
    spec = ExplainerSpec(canonize=False, first_layer="same", groups=groups or {}, attention=attention)
    return LrpExplainer(spec, model, layers, low=None, high=None, batch_budget=len(x), cache=cache)(x, targets)


class SelfAttentionToy(nn.Module):
    """Tokens (N, 1, T, D) as an image: ``logits = sum_t (softmax(x x^T) x)_t`` per feature -> D classes."""

    def forward(self, x):
        h = x[:, 0]
        weights = torch.softmax(h @ h.transpose(-2, -1), dim=-1)
        return (weights @ h).sum(dim=1)


def _toy_relevance(x, target, attention):
    """The toy's relevance written out in the relevance frame from the AttnLRP paper's rules:
    uniform matmul rule ``R(a_ij) = sum_k a_ij b_jk R_ik / (2 y_ik)`` (likewise for b), softmax rule
    ``R(z) = z * (R_s - s * sum R_s)``; CP-LRP: the weights constant, all relevance to the values."""
    h = x[0, 0]
    scores = h @ h.T
    s = torch.softmax(scores, dim=-1)
    y = s @ h
    r_y = torch.zeros_like(y)
    r_y[:, target] = y[:, target]  # the logit's relevance is the logit: spread over its summands (linear sum)
    share = 1.0 if attention == "cp" else 0.5
    contrib = s.unsqueeze(2) * h.unsqueeze(0) * (r_y / y).unsqueeze(1)  # (i, j, k): s_ij h_jk R_ik / y_ik
    r_h = share * contrib.sum(dim=0)  # the values operand
    if attention == "cp":
        return r_h
    r_s = 0.5 * contrib.sum(dim=2)
    r_scores = scores * (r_s - s * r_s.sum(dim=-1, keepdim=True))
    contrib2 = h.unsqueeze(1) * h.unsqueeze(0) * (r_scores / scores).unsqueeze(2)  # (i, j, d): h_id h_jd R_ij / z_ij
    r_h = r_h + 0.5 * contrib2.sum(dim=1) + 0.5 * contrib2.sum(dim=0)
    return r_h


@pytest.mark.parametrize("attention", ["attnlrp", "cp"])
def test_softmax_and_uniform_rules_equal_the_hand_computed_relevance(attention):
    torch.manual_seed(0)
    x = torch.randn(1, 1, 5, 4, dtype=torch.float64)
    got = explain(SelfAttentionToy(), x, torch.tensor([2]), attention)
    expected = _toy_relevance(x, 2, attention)
    assert got.shape == (1, 1, 5, 4)
    error = (got[0, 0] - expected).abs().max() / expected.abs().max()
    assert error < 1e-12, error


def _vit(**kw):
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
                              num_classes=5, **kw).double().eval()
    for p in model.parameters():
        nn.init.normal_(p, std=0.3)
    return model


def test_cp_lrp_conserves_the_logit_with_zero_biases():
    # CP-LRP holds the attention constant: every remaining operation is linear or the identity rule,
    # so with zero biases, position embedding and class token the input relevance is the logit
    model = _vit()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "pos_embedding" in name or name == "class_token":
                p.zero_()
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    targets = torch.tensor([0, 3, 4])
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    layers = LayerGroups(groups={"all": names}, first_layer=names[0], transformer=True)
    relevance = explain(model, x, targets, "cp", layers, {"all": GroupRule("epsilon", 1e-12)})
    logits = model(x).gather(1, targets.view(-1, 1)).flatten()
    sums = relevance.sum(dim=(1, 2, 3))
    # what is not conserved is the stabilizers' share: 1e-10 added to the inputs of the GELUs and
    # of the weighted layers (as LXT does) and epsilon 1e-12, a few hundred terms: 1e-9 absolute bounds it
    assert ((sums - logits).abs() <= 1e-9).all(), (sums, logits)
    # AttnLRP's softmax rule absorbs relevance (a softmax is not linear): the sums differ
    attn = explain(model, x, targets, "attnlrp", layers, {"all": GroupRule("epsilon", 1e-12)})
    assert not torch.allclose(attn.sum(dim=(1, 2, 3)), logits, rtol=1e-3)


def test_fused_and_unfused_multihead_attention_give_the_same_relevance():
    # nn.MultiheadAttention through scaled_dot_product_attention (need_weights=False, torchvision's
    # call) and through its explicit softmax (need_weights=True): one computation, one relevance
    class Net(nn.Module):
        def __init__(self, need_weights):
            super().__init__()
            self.mha = nn.MultiheadAttention(8, 2, batch_first=True)
            self.head = nn.Linear(8, 3)
            self.need_weights = need_weights

        def forward(self, x):
            tokens = x[:, 0]
            out, _ = self.mha(tokens, tokens, tokens, need_weights=self.need_weights)
            return self.head((out + tokens).mean(dim=1))

    torch.manual_seed(1)
    fused = Net(False).double().eval()
    unfused = Net(True).double().eval()
    unfused.load_state_dict(fused.state_dict())
    x = torch.randn(4, 1, 6, 8, dtype=torch.float64)
    targets = torch.tensor([0, 1, 2, 1])
    for attention in ("attnlrp", "cp"):
        a, b = explain(fused, x, targets, attention), explain(unfused, x, targets, attention)
        assert (a - b).abs().max() <= 1e-12 * a.abs().max()
        assert a.abs().max() > 0
    census = operation_census(fused, x)
    assert census.counts["multi_head_attention"] == 1 and census.counts["scaled_dot_product_attention"] == 1
    assert census.uncovered == []


def test_one_kept_forward_serves_both_attention_rules():
    model = _vit()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    targets = torch.tensor([1, 2])
    cache = shared_cache(256)
    uncached = {a: explain(model, x, targets, a) for a in ("attnlrp", "cp")}
    for attention in ("cp", "attnlrp", "cp"):
        cached = explain(model, x, targets, attention, cache=cache)
        assert torch.equal(cached, uncached[attention]) or (cached - uncached[attention]).abs().max() <= 1e-13
    assert not torch.allclose(uncached["attnlrp"], uncached["cp"])


def test_census_names_an_operation_no_rule_covers():
    class CosineAttention(nn.Module):
        def forward(self, x):
            h = x[:, 0]
            h = h / h.norm(dim=-1, keepdim=True)  # a division by an input-dependent tensor
            return torch.softmax(h @ h.transpose(-2, -1), dim=-1).sum(dim=1)

    census = operation_census(CosineAttention(), torch.randn(1, 1, 4, 4))
    assert any(u.startswith("norm") for u in census.uncovered), census.uncovered
    assert any(u.startswith("__truediv__") or u.startswith("div") for u in census.uncovered), census.uncovered


def test_elementwise_activation_takes_the_identity_rule():
    # y = gelu(x) elementwise, then a sum: the identity rule gives each input the relevance of its output
    class Gelu(nn.Module):
        def forward(self, x):
            return F.gelu(x).flatten(1).sum(dim=1, keepdim=True)

    x = torch.randn(2, 1, 3, 3, dtype=torch.float64)
    got = explain(Gelu(), x, torch.tensor([0, 0]), "attnlrp")
    y = F.gelu(x)
    # x * y / (x + 1e-10) (LXT's stabilizer): y up to a relative 1e-10 / |x|
    bound = y.abs() * 1e-10 / (x + 1e-10).abs() * 1.01 + 1e-15
    assert ((got - y).abs() <= bound).all()


def test_a_canonized_gate_gives_the_signal_the_products_relevance_in_the_gradient_frame():
    # GateMul (canonization's squeeze-excitation gate) holds the gate constant in both frames
    from xaiopt.canonize.layers import GateMul

    class Gated(nn.Module):
        def __init__(self):
            super().__init__()
            self.gate = GateMul()

        def forward(self, x):
            g = torch.sigmoid(x.mean(dim=(2, 3), keepdim=True))
            return self.gate(x, g).flatten(1).sum(dim=1, keepdim=True)

    x = torch.randn(2, 1, 3, 3, dtype=torch.float64)
    got = explain(Gated(), x, torch.tensor([0, 0]), "attnlrp")
    expected = x * torch.sigmoid(x.mean(dim=(2, 3), keepdim=True))  # each product's value, all to the signal
    assert (got - expected).abs().max() <= 1e-14


def test_a_recorded_forward_the_cache_does_not_keep_is_freed():
    # softmax and attention save their own outputs for the backward: kept with their grad_fn they would
    # form a cycle through the C++ graph that Python's collector cannot free (2 GB per explanation of
    # a ViT-B/16 at 8 images, before the fix)
    import gc

    from xaiopt.lrp import ForwardCache
    from xaiopt.lrp.site import Site

    model = _vit()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    cache = ForwardCache(budget_mb=64)
    cache.store = lambda key, entry: False  # recorded and differentiated, then not kept
    gc.collect()
    before = sum(isinstance(o, Site) for o in gc.get_objects())
    for attention in ("attnlrp", "cp", "attnlrp"):
        explain(model, x, torch.tensor([1, 2]), attention, cache=cache)
    gc.collect()
    assert sum(isinstance(o, Site) for o in gc.get_objects()) == before
