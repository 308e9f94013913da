"""Every model family the canonizer supports, plain and canonized: engine == zennit composite (float64).

Seeded random weights only (``weights=None`` / ``pretrained=False``, the embedded benchmark's
architectures untrained, which spares a training per test session): nothing is downloaded. Batch norms get
random statistics so that they are not identities.
"""

import pytest
import timm
import torch
import torchvision
from torch import nn

from xaiopt.canonize import canonize
from xaiopt.space import ExplainerSpec, GroupRule, resolve_groups
from xaiopt.zoo.benchmark_models import build_benchmark_model

from .conftest import (
    assert_engine_equals_zennit,
    bounds,
    randomize_batch_norms,
    spec_for,
)


def _vgg11_bn():
    model = torchvision.models.vgg11_bn(weights=None, num_classes=10)
    # the features are the family; a narrow head of the same layout keeps the suite fast
    model.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 32), nn.ReLU(True), nn.Dropout(),
                                     nn.Linear(32, 32), nn.ReLU(True), nn.Dropout(), nn.Linear(32, 10))
    return model


FAMILIES = {
    "benchmark:vgg": lambda: build_benchmark_model("vgg"),
    "benchmark:resnet": lambda: build_benchmark_model("resnet"),
    "benchmark:densenet": lambda: build_benchmark_model("densenet"),
    "torchvision:resnet18": lambda: torchvision.models.resnet18(weights=None, num_classes=10),
    "torchvision:vgg11_bn": _vgg11_bn,
    "torchvision:densenet121": lambda: torchvision.models.densenet121(weights=None, num_classes=10),
    "torchvision:efficientnet_b0": lambda: torchvision.models.efficientnet_b0(weights=None, num_classes=10),
    "timm:resnet18": lambda: timm.create_model("resnet18", pretrained=False, num_classes=10),
    "timm:efficientnet_b0": lambda: timm.create_model("efficientnet_b0", pretrained=False, num_classes=10),
    "timm:regnetx_002": lambda: timm.create_model("regnetx_002", pretrained=False, num_classes=10),
    # re-parameterized branches: the twin runs one merged convolution per sum of branches
    "timm:repvgg_a0": lambda: timm.create_model("repvgg_a0", pretrained=False, num_classes=10),
    "timm:mobileone_s0": lambda: timm.create_model("mobileone_s0", pretrained=False, num_classes=10),
}


def _mixed(layers, canon):
    names = list(layers.groups)
    choices = [GroupRule("gamma", 0.5), GroupRule("epsilon", 0.01), GroupRule("alpha2beta1"), GroupRule("zplus")]
    groups = {g: choices[i % len(choices)] for i, g in enumerate(names)}
    groups["classifier"] = GroupRule("epsilon", 1e-6)
    return ExplainerSpec(canonize=canon, first_layer="flat", groups=groups)


def family_setup(family: str):
    """The family's model (random weights and batch-norm statistics, float64), its canonized twin, two
    random images and their bounds."""
    torch.manual_seed(0)
    model = randomize_batch_norms(FAMILIES[family]()).double().eval()
    size = 64 if family.startswith("benchmark") else 32
    x = torch.randn(2, 3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    twin, _ = canonize(model, x[:1])
    return model, twin.double().eval(), x, *bounds(x)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family(family):
    model, twin, x, low, high = family_setup(family)
    for canon, m in [(False, model), (True, twin)]:
        layers = resolve_groups(m, x[:1], 3)
        targets = m(x).argmax(1)
        assert_engine_equals_zennit(spec_for(layers, "gamma", 0.25, "zbox", canon), m, layers, x, targets, low, high)
        assert_engine_equals_zennit(_mixed(layers, canon), m, layers, x, targets, low, high)
