"""explainer_for's engine switch: both engines selectable and equal; a plugin rule runs under zennit."""

import pytest
import torch
from zennit.rules import Epsilon

from xaiopt.errors import ConfigError
from xaiopt.lrp import LrpExplainer, shared_cache
from xaiopt.objective.explain import Explainer, explainer_for
from xaiopt.space import register_rule
from xaiopt.space.rules import _RULES

from .conftest import benchmark_float64, bounds, spec_for


@pytest.fixture(scope="module")
def vgg():
    return benchmark_float64("vgg", 2, 1)


def _run(engine, spec, model, layers, x, **kw):
    low, high = bounds(x)
    with explainer_for(spec, model, layers, low=low, high=high, batch_budget=2, engine=engine, **kw) as explain:
        return type(explain), explain(x, torch.tensor([0, 1]))


def test_engines_agree_and_are_selectable(vgg):
    model, layers, x = vgg
    spec = spec_for(layers, "gamma", 0.25, "zbox")
    kind_x, rel_x = _run("xaiopt", spec, model, layers, x)
    kind_z, rel_z = _run("zennit", spec, model, layers, x)
    assert kind_x is LrpExplainer and kind_z is Explainer
    assert (rel_x - rel_z).abs().max() <= 1e-10 * rel_z.abs().max()
    # the zennit composite is removed after its block: a plain forward has no hooks left
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_cache_through_explainer_for(vgg):
    model, layers, x = vgg
    cache = shared_cache()
    cache.clear()
    hits = cache.stats.hits
    spec = spec_for(layers, "epsilon", 0.1)
    _, first = _run("xaiopt", spec, model, layers, x, lrp_cache_mb=64)
    _, second = _run("xaiopt", spec_for(layers, "gamma", 0.5), model, layers, x, lrp_cache_mb=64)
    _, again = _run("xaiopt", spec, model, layers, x, lrp_cache_mb=64)
    assert cache.stats.hits - hits == 2 and torch.equal(first, again) and not torch.equal(first, second)
    cache.clear()


def test_unknown_engine_is_a_config_error(vgg):
    model, layers, x = vgg
    with pytest.raises(ConfigError, match="runtime.engine.*valid: xaiopt, zennit"):
        _run("captum", spec_for(layers, "epsilon", 0.1), model, layers, x)


def test_plugin_rule_runs_under_zennit(vgg):
    model, layers, x = vgg
    register_rule("plugin_eps", param="epsilon", code="Epsilon(epsilon={param!r})")(lambda v: Epsilon(float(v)))
    try:
        spec = spec_for(layers, "plugin_eps", 0.1)
        kind, rel = _run("xaiopt", spec, model, layers, x)
        _, reference = _run("xaiopt", spec_for(layers, "epsilon", 0.1), model, layers, x)
    finally:
        _RULES.pop("plugin_eps")
    assert kind is Explainer
    assert (rel - reference).abs().max() <= 1e-10 * reference.abs().max()
