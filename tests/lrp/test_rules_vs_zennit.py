"""Every rule and first-layer rule, canonized or not, on the embedded benchmark's VGG architecture
(seeded random weights): the engine's relevance equals the zennit composite's in float64."""

import pytest
import torch
from torch import nn

from xaiopt.canonize import canonize
from xaiopt.space import ExplainerSpec, GroupRule, LayerGroups, resolve_groups
from xaiopt.zoo.benchmark_models import build_benchmark_model

from .conftest import (
    assert_engine_equals_zennit,
    bounds,
    randomize_batch_norms,
    spec_for,
)

GROUP_RULES = [("epsilon", 0.25), ("epsilon", 1e-6), ("gamma", 0.25), ("gamma", 0.0), ("gamma", 1.0),
               ("alpha2beta1", None), ("alpha1beta0", None), ("zplus", None), ("flat", None), ("wsquare", None)]


@pytest.fixture(scope="module")
def vgg():
    torch.manual_seed(0)
    model = randomize_batch_norms(build_benchmark_model("vgg")).double().eval()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    twin, _ = canonize(model, x[:1])
    twin = twin.double().eval()
    out = {}
    for canon, m in [(False, model), (True, twin)]:
        out[canon] = (m, resolve_groups(m, x[:1], 3))
    return out, x


@pytest.mark.parametrize("canon", [False, True], ids=["plain", "canonized"])
@pytest.mark.parametrize("rule, value", GROUP_RULES)
def test_group_rule(vgg, canon, rule, value):
    models, x = vgg
    model, layers = models[canon]
    low, high = bounds(x)
    targets = torch.tensor([1, 3])  # not always the prediction
    assert_engine_equals_zennit(spec_for(layers, rule, value, canonize=canon), model, layers, x, targets, low, high)


@pytest.mark.parametrize("canon", [False, True], ids=["plain", "canonized"])
@pytest.mark.parametrize("first", ["zbox", "wsquare", "flat", "alpha2beta1", "zplus"])
def test_first_layer_rule(vgg, canon, first):
    models, x = vgg
    model, layers = models[canon]
    low, high = bounds(x)
    targets = model(x).argmax(1)
    spec = spec_for(layers, "gamma", 0.25, first=first, canonize=canon)
    assert_engine_equals_zennit(spec, model, layers, x, targets, low, high)


def _shape_keeping_net() -> nn.Module:
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),   # shape-keeping: "pass" is defined here
        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 5),
    )
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.uniform_(m.bias, -0.3, 0.3)
    return randomize_batch_norms(net).double().eval()


@pytest.mark.parametrize("rule, value", [("pass", None), ("zbox", None), ("gamma", 0.5), ("epsilon", 0.1)])
def test_rules_on_hidden_shape_keeping_layers(rule, value):
    """``pass`` needs a layer that keeps the shape; ``zbox`` on hidden layers takes scalar bounds."""
    net = _shape_keeping_net()
    layers = LayerGroups(groups={"mid": ["2", "5"], "rest": ["0", "10"]}, first_layer="0")
    spec = ExplainerSpec(canonize=False, first_layer="same",
                         groups={"mid": GroupRule(rule, value), "rest": GroupRule("epsilon", 1e-3)})
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert_engine_equals_zennit(spec, net, layers, x, torch.tensor([0, 2, 4]), -3.0, 3.0)
