"""Every rule and first-layer rule, canonized or not, on the embedded benchmark's VGG architecture
(seeded random weights): the engine's relevance equals the zennit composite's in float64."""

import pytest
import torch
from torch import nn

from xaiopt.canonize import canonize
from xaiopt.lrp.cache import ForwardCache
from xaiopt.space import ExplainerSpec, GroupRule, LayerGroups, resolve_groups
from xaiopt.zoo.benchmark_models import build_benchmark_model

from .conftest import (
    assert_engine_equals_zennit,
    bounds,
    engine_relevance,
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


def _zero_output_net() -> nn.Module:
    """Bias-free convolutions: on an input block of zeros their outputs are exactly 0, where neither of
    gamma's sign masks holds and a denominator can be 0."""
    torch.manual_seed(4)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.ReLU(),
        nn.Conv2d(4, 6, 3, padding=1, bias=False), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 10 * 10, 5),
    )
    return net.double().eval()


@pytest.mark.parametrize("first", ["same", "zbox"])
@pytest.mark.parametrize("rule, value", [("gamma", 0.25), ("gamma", 0.0), ("alpha2beta1", None), ("zplus", None),
                                         ("epsilon", 1e-6)])
def test_exact_zero_outputs_kept_and_not(rule, value, first):
    net = _zero_output_net()
    layers = LayerGroups(groups={"conv": ["0", "2"], "classifier": ["5"]}, first_layer="0")
    spec = ExplainerSpec(canonize=False, first_layer=first,
                         groups={"conv": GroupRule(rule, value), "classifier": GroupRule("epsilon", 1e-6)})
    x = torch.randn(2, 3, 10, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    x[:, :, :6, :6] = 0.0
    with torch.no_grad():
        assert (net[0](x)[:, :, 1:5, 1:5] == 0).all()  # the zero block reaches the layers' outputs
    targets = torch.tensor([1, 3])
    expected = assert_engine_equals_zennit(spec, net, layers, x, targets, -3.0, 3.0)
    cache = ForwardCache(budget_mb=64)
    first_call = engine_relevance(spec, net, layers, x, targets, -3.0, 3.0, cache=cache)
    kept_call = engine_relevance(spec, net, layers, x, targets, -3.0, 3.0, cache=cache)
    assert cache.stats.hits == 1
    for got in (first_call, kept_call):
        assert torch.isfinite(got).all()
        assert (got - expected).abs().max() <= 1e-10 * expected.abs().max()
