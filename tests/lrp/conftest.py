"""Shared helpers: the zennit composite and the engine on the same model, spec and float64 inputs."""

from __future__ import annotations

import torch
from torch import nn

from xaiopt.lrp import LrpExplainer
from xaiopt.objective.explain import explainer_for
from xaiopt.space import ExplainerSpec, GroupRule, LayerGroups

TOLERANCE = 1e-10


def zennit_relevance(spec, model, layers, x, targets, low, high):
    with explainer_for(spec, model, layers, low=low, high=high, batch_budget=len(x), engine="zennit") as explain:
        return explain(x, targets)


def engine_relevance(spec, model, layers, x, targets, low, high, cache=None):
    return LrpExplainer(spec, model, layers, low=low, high=high, batch_budget=len(x), cache=cache)(x, targets)


def assert_engine_equals_zennit(spec, model, layers, x, targets, low, high):
    expected = zennit_relevance(spec, model, layers, x, targets, low, high)
    got = engine_relevance(spec, model, layers, x, targets, low, high)
    scale = expected.abs().max()
    assert scale > 0 and torch.isfinite(expected).all()
    error = (got - expected).abs().max()
    assert error <= TOLERANCE * scale, f"max|engine - zennit| = {error:.3e}, max|zennit| = {scale:.3e}"
    return expected


def spec_for(layers: LayerGroups, rule: str, value: float | None, first: str = "same", canonize: bool = False):
    return ExplainerSpec(canonize=canonize, first_layer=first,
                         groups={g: GroupRule(rule, value) for g in layers.groups})


def randomize_batch_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random-weight models have identity batch norms; give them statistics so BN matters."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            n = m.running_mean.numel()
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            if m.weight is not None:
                with torch.no_grad():
                    m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                    m.bias.copy_(torch.rand(n, generator=g) * 0.6 - 0.3)
    return model


def bounds(x: torch.Tensor):
    return x.amin(dim=(0, 2, 3), keepdim=True), x.amax(dim=(0, 2, 3), keepdim=True)


def benchmark_float64(family: str, n: int, seed: int):
    """A benchmark family with random weights and batch-norm statistics in float64, its 3 layer groups
    and ``n`` random 32x32 images."""
    from xaiopt.space import resolve_groups
    from xaiopt.zoo.benchmark_models import build_benchmark_model

    torch.manual_seed(0)
    model = randomize_batch_norms(build_benchmark_model(family)).double().eval()
    x = torch.randn(n, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return model, resolve_groups(model, x[:1], 3), x
