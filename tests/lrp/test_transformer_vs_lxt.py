"""xaiopt's transformer LRP against LXT 2.1 (AttnLRP's reference implementation) on torchvision's
VisionTransformer with random weights, float64.

- CP-LRP: LXT's efficient mode with its torchvision map (and zennit's rules on the Linear / Conv2d
  modules through LXT's zennit bridge) equals the engine within 1e-10 relative.
- AttnLRP: a reference forward written with LXT's explicit rules (tests/lrp/lxt_reference.py). The
  two differ only by their stabilizers (LXT's efficient frame, which the engine follows, adds 1e-10
  to the inputs of GELUs and rule layers; the explicit rules add their own epsilons): the difference
  shrinks with the stabilizers and is below 1e-7 when they are 1e-12.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("lxt")
zennit_rules = pytest.importorskip("zennit.rules")

from xaiopt.lrp import LrpExplainer  # noqa: E402
from xaiopt.space import ExplainerSpec, GroupRule, LayerGroups, resolve_groups  # noqa: E402

from .lxt_reference import (  # noqa: E402
    lxt_efficient_torchvision_vit,
    lxt_explicit_attnlrp,
    relative_error,
    small_vit,
)

TOLERANCE = 1e-10


def _weighted(model):
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def _engine(model, x, targets, attention, rule, value, first=None):
    names = _weighted(model)
    layers = LayerGroups(groups={"all": names}, first_layer=names[0], transformer=True)
    spec = ExplainerSpec(canonize=False, first_layer=first or "same", groups={"all": GroupRule(rule, value)},
                         attention=attention)
    return LrpExplainer(spec, model, layers, low=None, high=None, batch_budget=len(x))(x, targets)


@pytest.fixture(scope="module")
def batch():
    torch.manual_seed(0)
    return torch.randn(3, 3, 32, 32, dtype=torch.float64), torch.tensor([0, 4, 7])


@pytest.mark.parametrize("rule,value,zennit_rule", [
    ("epsilon", 1e-6, lambda: zennit_rules.Epsilon(1e-6)),
    ("epsilon", 0.1, lambda: zennit_rules.Epsilon(0.1)),
    ("gamma", 0.25, lambda: zennit_rules.Gamma(0.25)),
    ("gamma", 0.0, lambda: zennit_rules.Gamma(0.0)),
    ("zplus", None, lambda: zennit_rules.ZPlus()),
])
def test_cp_lrp_equals_lxt_efficient_with_zennit_rules(batch, rule, value, zennit_rule):
    x, targets = batch
    model = small_vit(seed=1)
    expected = lxt_efficient_torchvision_vit(model, x, targets, linear_rule=zennit_rule(), conv_rule=zennit_rule())
    got = _engine(model, x, targets, "cp", rule, value)
    assert expected.abs().max() > 0 and torch.isfinite(expected).all()
    assert relative_error(got, expected) <= TOLERANCE


def test_cp_lrp_equals_lxt_on_vit_b_16(batch):
    from torchvision.models import vit_b_16

    x, targets = batch
    torch.manual_seed(2)
    model = vit_b_16(image_size=32).double().eval()
    with torch.no_grad():  # torchvision zeroes the head: the logits would vanish
        model.heads.head.weight.normal_(0, 0.02)
        model.class_token.normal_(0, 0.5)
    expected = lxt_efficient_torchvision_vit(model, x, targets, linear_rule=zennit_rules.Gamma(0.1),
                                             conv_rule=zennit_rules.Gamma(0.25))
    names = _weighted(model)
    layers = LayerGroups(groups={"conv": ["conv_proj"], "linear": [n for n in names if n != "conv_proj"]},
                         first_layer="conv_proj", transformer=True)
    spec = ExplainerSpec(canonize=False, first_layer="same", attention="cp",
                         groups={"conv": GroupRule("gamma", 0.25), "linear": GroupRule("gamma", 0.1)})
    got = LrpExplainer(spec, model, layers, low=None, high=None, batch_budget=3)(x, targets)
    assert relative_error(got, expected) <= TOLERANCE


def test_attnlrp_converges_to_lxt_explicit_rules(batch):
    x, targets = batch
    model = small_vit(seed=3)
    errors = {}
    for eps in (1e-6, 1e-9, 1e-12):
        expected = lxt_explicit_attnlrp(model, x, targets, epsilon=eps, stabilizer=eps)
        errors[eps] = relative_error(_engine(model, x, targets, "attnlrp", "epsilon", eps), expected)
    # the difference is the stabilizers': it falls with them, down to the 1e-10 of LXT's efficient frame
    assert errors[1e-9] < errors[1e-6] / 100
    assert errors[1e-12] < 1e-7, errors


def test_automatic_groups_put_every_rule_layer_of_torchvision_vit_in_a_group(batch):
    x, _ = batch
    model = small_vit(seed=4, num_layers=3)
    layers = resolve_groups(model, x[:1], 3)
    assert layers.transformer and layers.first_layer == "conv_proj"
    assert layers.groups["head"] == ["heads.head"]
    assert layers.groups["blocks1"][0] == "conv_proj"
    assert [n.split(".")[2] for g in ("blocks1", "blocks2", "blocks3") for n in layers.groups[g][-2:]] == [
        "encoder_layer_0", "encoder_layer_0", "encoder_layer_1", "encoder_layer_1", "encoder_layer_2",
        "encoder_layer_2"]
