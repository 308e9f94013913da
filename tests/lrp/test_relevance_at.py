"""Relevance at chosen modules' outputs (``relevance_at``): xaiopt's engine uncached and cached, and the
zennit path, each equal in float64 to the gradient the zennit composite's backward pass has at that
tensor (read with a tensor hook under zennit's own attributor); the cache keys and counts what it keeps."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from zennit.attribution import Gradient

from xaiopt.canonize import canonize
from xaiopt.errors import ConfigError
from xaiopt.lrp import ForwardCache, LrpExplainer
from xaiopt.objective.explain import explainer_for
from xaiopt.space import resolve_groups

from .conftest import TOLERANCE, benchmark_float64, bounds, spec_for

TARGETS = torch.tensor([0, 1, 3])
# a ReLU (Pass rule), the max pool after it (no rule), a conv (its group's rule), a linear layer
VGG_LAYERS = ["features.10", "features.11", "features.8", "classifier.0"]


@pytest.fixture(scope="module")
def vgg():
    return benchmark_float64("vgg", 3, 1)


def zennit_at(spec, model, layers, x, targets, names):
    """The composite's backward, read independently: zennit's attributor, a tensor hook on each output."""
    low, high = bounds(x)
    composite = spec.to_composite(layers, low=low, high=high)
    grads: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(module, args, output):
            output.register_hook(lambda g: grads.__setitem__(name, g.detach().clone()))
        return hook

    with Gradient(model, composite) as attributor:
        handles = [model.get_submodule(n).register_forward_hook(keep(n)) for n in names]
        try:
            _, rel = attributor(x, lambda out: torch.zeros_like(out).scatter_(
                1, targets.view(-1, 1), out.gather(1, targets.view(-1, 1))))
        finally:
            for h in handles:
                h.remove()
    return grads, rel.sum(1, keepdim=True)


def assert_close(got, want):
    scale = want.abs().max()
    assert scale > 0 and got.shape == want.shape and got.dtype == torch.float64
    assert (got - want).abs().max() <= TOLERANCE * scale, float((got - want).abs().max() / scale)


def each_engine(spec, model, layers, x, targets, names, cache):
    """relevance_at of: the engine uncached, the engine with a cache (twice: recorded, then reused), zennit."""
    low, high = bounds(x)
    results = {}
    with explainer_for(spec, model, layers, low=low, high=high, batch_budget=2, engine="xaiopt") as explain:
        assert isinstance(explain, LrpExplainer)
        results["xaiopt"] = explain.relevance_at(x, targets, names)
    cached = LrpExplainer(spec, model, layers, low=low, high=high, batch_budget=2, cache=cache)
    misses = cache.stats.misses
    results["xaiopt, recorded"] = cached.relevance_at(x, targets, names)
    hits = cache.stats.hits
    results["xaiopt, cached"] = cached.relevance_at(x, targets, names)
    assert cache.stats.misses - misses == 2 and cache.stats.hits - hits == 2  # 2 chunks, each kept and reused
    with explainer_for(spec, model, layers, low=low, high=high, batch_budget=2, engine="zennit") as explain:
        results["zennit"] = explain.relevance_at(x, targets, names)
        plain = explain(x, targets)
    return results, plain


@pytest.mark.parametrize("rule, value, first", [("gamma", 0.25, "zbox"), ("epsilon", 0.1, "flat"),
                                                ("alpha2beta1", None, "same")])
def test_relevance_at_layers_equals_the_composites_gradient(vgg, rule, value, first):
    model, layers, x = vgg
    spec = spec_for(layers, rule, value, first)
    want, want_input = zennit_at(spec, model, layers, x, TARGETS, VGG_LAYERS)
    results, plain = each_engine(spec, model, layers, x, TARGETS, VGG_LAYERS, ForwardCache(budget_mb=64))
    for engine, got in results.items():
        assert list(got) == [*VGG_LAYERS, "input"], engine
        for name in VGG_LAYERS:
            assert_close(got[name], want[name])
        assert_close(got["input"], want_input)
    assert_close(results["zennit"]["input"], plain)  # the input relevance is the explainer's attribution
    for name, value in results["xaiopt, recorded"].items():  # the cached backward repeats the first exactly
        assert torch.equal(results["xaiopt, cached"][name], value), name
    # conservation across the max pool: what reaches the ReLU's output is what leaves the pool's
    torch.testing.assert_close(want["features.10"].sum(dim=(1, 2, 3)), want["features.11"].sum(dim=(1, 2, 3)))


def test_a_canonized_spec_reads_the_twin(vgg):
    model, _, x = vgg
    twin, report = canonize(model, x[:1])
    assert report.canonized
    layers = resolve_groups(twin, x[:1], 3)
    spec = spec_for(layers, "gamma", 0.5, "zbox", canonize=True)
    names = ["features.10", "features.12"]
    want, _ = zennit_at(spec, twin, layers, x, TARGETS, names)
    results, _ = each_engine(spec, twin, layers, x, TARGETS, names, ForwardCache(budget_mb=64))
    for got in results.values():
        for name in names:
            assert_close(got[name], want[name])
    # the twin merged the batch norm into its conv: the name exists, the module no longer runs
    low, high = bounds(x)
    for engine in ("xaiopt", "zennit"):
        with explainer_for(spec, twin, layers, low=low, high=high, batch_budget=2, engine=engine) as explain:
            with pytest.raises(ConfigError, match=r"^relevance_at: layers: module 'features.9' of the canonized twin "
                                                  r"did not run in the forward pass; .*merges batch norms") as err:
                explain.relevance_at(x, TARGETS, ["features.9"])
            assert "\n" not in str(err.value)


class Double(nn.Module):
    def forward(self, x):
        return 2.0 * x


class AddOne(nn.Module):
    def forward(self, x):
        return x + 1.0


def test_the_cache_keys_and_counts_the_kept_outputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), Double(), AddOne(), nn.Flatten(),
                          nn.Linear(4 * 6 * 6, 3)).double().eval()
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    targets = torch.tensor([0, 1, 2, 1])
    layers = resolve_groups(model, x[:1], 1)
    spec = spec_for(layers, "epsilon", 0.01)
    low, high = bounds(x)
    cache = ForwardCache(budget_mb=64)
    explain = LrpExplainer(spec, model, layers, low=low, high=high, batch_budget=4, cache=cache)
    plain = explain(x, targets)
    at = explain.relevance_at(x, targets, ["2", "1"])
    again = explain.relevance_at(x, targets, ["2", "1"])
    assert len(cache) == 2 and cache.stats.hits == 1  # the layers kept are part of the key
    only_relu = explain.relevance_at(x, targets, ["1"])
    assert len(cache) == 3 and cache.stats.hits == 1
    entries = list(cache._entries.values())
    # nothing else of the forward holds the storage of the ReLU's or the doubling's output (a scalar product
    # saves no tensor, a Pass rule keeps nothing): an entry that keeps them counts their bytes on top
    size = {name: t.numel() * t.element_size() for name, t in entries[1].watched.items()}
    assert size["2"] == size["1"] == 4 * 4 * 6 * 6 * 8
    assert entries[1].base_bytes - entries[0].base_bytes == size["1"] + size["2"]
    assert entries[2].base_bytes - entries[0].base_bytes == size["1"]
    assert entries[1].nbytes() <= cache.used_bytes() <= cache.budget_bytes
    want, want_input = zennit_at(spec, model, layers, x, targets, ["2", "1"])
    for got in (at, again):
        assert_close(got["2"], want["2"])
        assert_close(got["1"], want["1"])
        assert_close(got["input"], want_input)
    assert_close(only_relu["1"], want["1"])
    assert_close(plain, want_input)
    # the doubling's backward: the relevance at its input is twice that at its output
    assert_close(want["1"], 2.0 * want["2"])


class SharedRelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2, self.relu = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3), nn.ReLU()
        self.fc = nn.Linear(4 * 4 * 4, 2)

    def forward(self, x):
        return self.fc(self.relu(self.conv2(self.relu(self.conv1(x)))).flatten(1))


@pytest.mark.parametrize("names, message", [
    (["conv3"], r"^relevance_at: layers: 'conv3' is not a module of the model "
                r"\(its modules: conv1, conv2, relu, fc\)$"),
    (["relu"], r"^relevance_at: layers: module 'relu' of the model ran 2 times in the forward pass; name a module "
               r"that runs once per forward \(a shared activation runs once per use\)$"),
    ("conv1", r"^relevance_at: layers: expected a list of module names, got 'conv1'$"),
    ([], r"^relevance_at: layers: empty list; name at least one module"),
])
@pytest.mark.parametrize("engine", ["xaiopt", "zennit"])
def test_mistakes_are_one_line(names, message, engine):
    model = SharedRelu().double().eval()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    layers = resolve_groups(model, x[:1], 1)
    low, high = bounds(x)
    with explainer_for(spec_for(layers, "epsilon", 0.1), model, layers, low=low, high=high, batch_budget=2,
                       engine=engine) as explain:
        with pytest.raises(ConfigError, match=message):
            explain.relevance_at(x, torch.tensor([0, 1]), names)
        # the watching hooks are gone after a failed call: the next one works
        assert explain.relevance_at(x, torch.tensor([0, 1]), ["conv2"])["conv2"].shape == (2, 4, 4, 4)
