"""Recorded forwards kept across trials: the same relevance as a fresh computation, reused only for
the very same model (weights), twin, input content, dtype and device, within the memory budget."""

import copy
import gc
import logging

import pytest
import torch

from xaiopt.canonize import canonize
from xaiopt.lrp import ForwardCache, LrpExplainer
from xaiopt.space import resolve_groups

from .conftest import benchmark_float64, bounds, spec_for, zennit_relevance

SPECS = [("gamma", 0.25, "zbox"), ("epsilon", 0.1, "flat"), ("alpha2beta1", None, "wsquare"),
         ("gamma", 1.0, "same"), ("zplus", None, "zbox")]


@pytest.fixture(scope="module")
def setup():
    return benchmark_float64("resnet", 3, 7)


def _explain(model, layers, x, spec, cache, targets=None):
    low, high = bounds(x)
    targets = model(x).argmax(1) if targets is None else targets
    return LrpExplainer(spec, model, layers, low=low, high=high, batch_budget=2, cache=cache)(x, targets)


def test_reused_forward_gives_each_spec_its_own_relevance(setup):
    model, layers, x = setup
    cache = ForwardCache(budget_mb=256)
    low, high = bounds(x)
    targets = model(x).argmax(1)
    for rule, value, first in SPECS * 2:  # the second round runs on kept forwards only
        spec = spec_for(layers, rule, value, first)
        got = _explain(model, layers, x, spec, cache, targets)
        expected = zennit_relevance(spec, model, layers, x, targets, low, high)
        assert (got - expected).abs().max() <= 1e-10 * expected.abs().max()
    # 2 chunks (batch_budget 2 of 3 images): recorded once, then hit by the 9 later explanations
    assert (cache.stats.misses, cache.stats.hits) == (2, 18)
    assert len(cache) == 2 and 0 < cache.used_bytes() <= cache.budget_bytes


def test_other_targets_on_a_kept_forward(setup):
    model, layers, x = setup
    cache = ForwardCache(budget_mb=256)
    spec = spec_for(layers, "gamma", 0.25, "zbox")
    _explain(model, layers, x, spec, cache)
    for targets in (torch.tensor([0, 1, 2]), torch.tensor([3, 3, 0])):
        got = _explain(model, layers, x, spec, cache, targets)
        fresh = _explain(model, layers, x, spec, None, targets)
        assert torch.equal(got, fresh) or (got - fresh).abs().max() <= 1e-12 * fresh.abs().max()
    assert cache.stats.hits == 4


def _misses_after(cache, run):
    before = cache.stats.misses
    run()
    return cache.stats.misses - before


@pytest.mark.parametrize("change", ["model", "weights in place", "weights via .data", "twin", "input content",
                                    "dtype", "device"])
def test_key_rejects_every_change(setup, change):
    model, layers, x = setup
    cache = ForwardCache(budget_mb=256)
    spec = spec_for(layers, "gamma", 0.25, "same")
    _explain(model, layers, x, spec, cache)
    assert _misses_after(cache, lambda: _explain(model, layers, x, spec, cache)) == 0
    other_model, other_layers, other_x = model, layers, x
    if change == "model":
        other_model = copy.deepcopy(model)  # equal weights, another object
    elif change == "weights in place":
        other_model = copy.deepcopy(model)
        _explain(other_model, layers, x, spec, cache)
        with torch.no_grad():
            other_model.conv1.weight.mul_(1.5)
    elif change == "weights via .data":  # bypasses the version counter
        other_model = copy.deepcopy(model)
        _explain(other_model, layers, x, spec, cache)
        other_model.conv1.weight.data.mul_(1.5)
    elif change == "twin":
        other_model, _ = canonize(model, x[:1])
        other_layers = resolve_groups(other_model, x[:1], 3)
    elif change == "input content":
        other_x = x.clone()
        other_x[1, 2, 5, 5] += 1e-9
    elif change == "dtype":
        other_model, other_x = copy.deepcopy(model).float(), x.float()
    elif change == "device":
        if not torch.cuda.is_available():
            pytest.skip("no second device here")
        other_model, other_x = copy.deepcopy(model).cuda(), x.cuda()
    spec_other = spec_for(other_layers, "gamma", 0.25, "same")
    misses = _misses_after(cache, lambda: _explain(other_model, other_layers, other_x, spec_other, cache))
    # both chunks recorded anew; the changed pixel lies in the first chunk only
    assert misses == (1 if change == "input content" else 2)
    got = _explain(other_model, other_layers, other_x, spec_other, cache)
    fresh = _explain(other_model, other_layers, other_x, spec_other, None)
    tolerance = 1e-10 if other_x.dtype == torch.float64 else 1e-5  # kept and fresh round differently
    assert (got - fresh).abs().max() <= tolerance * fresh.abs().max()


def test_budget_bounds_the_cache(setup, caplog):
    model, layers, x = setup
    spec = spec_for(layers, "gamma", 0.25, "zbox")
    tiny = ForwardCache(budget_mb=0.01)  # smaller than one recorded forward: nothing kept, still correct
    with caplog.at_level(logging.DEBUG, logger="xaiopt.lrp.cache"):
        got = _explain(model, layers, x, spec, tiny)
        got_again = _explain(model, layers, x, spec, tiny)
    assert len(tiny) == 0 and tiny.stats.hits == 0 and tiny.stats.too_large >= 2
    fresh = _explain(model, layers, x, spec, None)
    assert torch.equal(got, got_again) and (got - fresh).abs().max() <= 1e-12 * fresh.abs().max()
    assert any("hit rate" in r.getMessage() for r in caplog.records)
    assert any("exceeds the budget" in r.getMessage() for r in caplog.records)

    # room for about one chunk: a full cache keeps what it has (a study cycles through its inputs);
    # an entry whose model is gone, or that went unused for idle_lookups lookups, makes room
    one = ForwardCache(budget_mb=256)
    _explain(model, layers, x[:2], spec, one)
    size = one.used_bytes()
    small = ForwardCache(budget_mb=1.5 * size / 2**20, idle_lookups=3)
    _explain(model, layers, x[:2], spec, small)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="xaiopt.lrp.cache"):
        _explain(model, layers, x[1:], spec, small)  # another input: not kept, the first stays
        _explain(model, layers, x[1:], spec, small)
    assert len(small) == 1 and small.stats.full == 2 and small.stats.evictions == 0
    told = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(told) == 1 and "runtime.lrp_cache_mb" in told[0] and "is full with 1 recorded forwards" in told[0]
    assert _misses_after(small, lambda: _explain(model, layers, x[:2], spec, small)) == 0
    for _ in range(4):  # the kept input goes unused for more than idle_lookups lookups
        _explain(model, layers, x[1:], spec, small)
    assert small.stats.evictions == 1 and len(small) == 1
    assert _misses_after(small, lambda: _explain(model, layers, x[1:], spec, small)) == 0
    assert small.used_bytes() <= small.budget_bytes


def test_entry_of_a_dropped_model_makes_room(setup):
    model, layers, x = setup
    spec = spec_for(layers, "gamma", 0.25, "zbox")
    probe = ForwardCache(budget_mb=256)
    _explain(model, layers, x[:2], spec, probe)
    cache = ForwardCache(budget_mb=1.5 * probe.used_bytes() / 2**20)
    temporary = copy.deepcopy(model)
    _explain(temporary, layers, x[:2], spec, cache)
    assert len(cache) == 1
    del temporary
    gc.collect()
    _explain(model, layers, x[:2], spec, cache)
    assert len(cache) == 1 and cache.stats.evictions == 1
    assert _misses_after(cache, lambda: _explain(model, layers, x[:2], spec, cache)) == 0


def test_what_the_rules_derive_later_counts_against_the_budget(setup):
    # an entry is stored with what its first spec derived; other rules derive more on later trials
    # (a transformer's generalized gamma keeps three output-sized tensors per layer): over the budget
    # the entry stops keeping them, and the relevance stays the fresh one
    model, layers, x = setup
    room = ForwardCache(budget_mb=256)
    _explain(model, layers, x[:2], spec_for(layers, "epsilon", 0.1, "flat"), room)
    stored = room.used_bytes()
    cache = ForwardCache(budget_mb=1.05 * stored / 2**20)
    _explain(model, layers, x[:2], spec_for(layers, "epsilon", 0.1, "flat"), cache)
    assert len(cache) == 1
    for rule, value, first in SPECS:
        spec = spec_for(layers, rule, value, first)
        got = _explain(model, layers, x[:2], spec, cache)
        fresh = _explain(model, layers, x[:2], spec, None)
        assert (got - fresh).abs().max() <= 1e-12 * fresh.abs().max()
        assert cache.used_bytes() <= cache.budget_bytes
    assert cache.stats.trimmed >= 1 and len(cache) == 1 and cache.stats.hits >= len(SPECS)
