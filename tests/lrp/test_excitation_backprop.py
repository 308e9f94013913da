"""Excitation Backprop (the base composite ``excitation_backprop``) equals zennit's own
``ExcitationBackprop`` composite in float64, in xaiopt's engine and through the worker's zennit
composite, on every model family of the suite, plain and canonized; and a hand-computed network
where it differs from LRP-z+ (the gradient through a batch norm).

Seeded random weights only, batch norms with random statistics; nothing is downloaded.
"""

from __future__ import annotations

import optuna
import pytest
import torch
from torch import nn
from zennit.attribution import Gradient
from zennit.composites import ExcitationBackprop

from xaiopt.canonize import GraphCanonizer
from xaiopt.config import parse_config
from xaiopt.errors import ConfigError
from xaiopt.lrp import LrpExplainer
from xaiopt.space import ExplainerSpec, GroupRule, LayerGroups, SearchSpace, resolve_groups
from xaiopt.study.baselines import baseline_trials

from .conftest import TOLERANCE, engine_relevance, zennit_relevance
from .test_families_vs_zennit import FAMILIES, family_setup


def zennit_excitation_backprop(model, x, targets, canonizers=None):
    """zennit's composite, seeded with the target logit (as the worker seeds), channels summed."""
    with torch.no_grad():
        n_out = model(x).shape[1]
    onehot = nn.functional.one_hot(targets, n_out).to(x.dtype)
    with Gradient(model, ExcitationBackprop(canonizers=canonizers)) as attributor:
        _, relevance = attributor(x, lambda out: out * onehot)
    return relevance.sum(1, keepdim=True)


def eb_spec(layers: LayerGroups, canon: bool, rule: str = "zplus") -> ExplainerSpec:
    return ExplainerSpec(canonize=canon, first_layer="same", groups={g: GroupRule(rule) for g in layers.groups},
                         base="excitation_backprop")


def _close(got, expected, what):
    scale = expected.abs().max()
    assert scale > 0 and torch.isfinite(expected).all()
    error = (got - expected).abs().max()
    assert error <= TOLERANCE * scale, f"{what}: max|diff| = {error:.3e}, max|zennit| = {scale:.3e}"


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_equals_zennits_excitation_backprop(family):
    model, twin, x, low, high = family_setup(family)
    for canon, m in [(False, model), (True, twin)]:
        layers = resolve_groups(m, x[:1], 3)
        targets = m(x).argmax(1)
        expected = zennit_excitation_backprop(m, x, targets)
        spec = eb_spec(layers, canon)
        _close(engine_relevance(spec, m, layers, x, targets, low, high), expected, f"engine, canonized={canon}")
        _close(zennit_relevance(spec, m, layers, x, targets, low, high), expected, f"SpecComposite, canonized={canon}")
        if "efficientnet" in family:
            continue  # the two checks below cost ten times more on EfficientNet and test nothing family-specific
        # the per-group rule of that name is z+ on its layers
        _close(engine_relevance(eb_spec(layers, canon, "excitation_backprop"), m, layers, x, targets, low, high),
               expected, f"rule excitation_backprop, canonized={canon}")
        if canon:
            # zennit's composite canonizing the plain model itself gives the twin's relevance
            _close(zennit_excitation_backprop(model, x, targets, canonizers=[GraphCanonizer()]), expected,
                   "zennit's composite with GraphCanonizer on the plain model")


def test_hand_computed_batch_norm_gradient():
    """x -> Linear -> BatchNorm -> ReLU -> Linear: Excitation Backprop carries the relevance through the
    batch norm by its gradient (scaled by gamma / sqrt(var + eps)), LRP passes it on unchanged."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).double().eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.8, -1.0], [-0.7, 0.2, 1.5], [2.0, 1.0, 1.0]]))
        model[0].bias.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
        model[1].running_mean.copy_(torch.tensor([0.2, -0.1, 0.4, 0.5]))
        model[1].running_var.copy_(torch.tensor([0.5, 2.0, 1.0, 4.0]))
        model[1].weight.copy_(torch.tensor([1.5, 0.5, 2.0, 0.25]))
        model[1].bias.copy_(torch.tensor([0.3, 0.1, -0.2, 0.4]))
        model[3].weight.copy_(torch.tensor([[1.0, -0.5, 0.8, 0.6], [-1.0, 0.4, 0.3, -0.2]]))
        model[3].bias.copy_(torch.tensor([0.05, -0.05]))
    x = torch.tensor([[0.5, -1.0, 2.0], [1.0, 0.5, -0.5]], dtype=torch.float64)
    targets = torch.tensor([0, 1])

    def zplus(a, w, b, r):
        # zennit's ZPlus: (a+ W+ + a- W-) / (z+ + stab), z+ = a+ W+^T + b+ + a- W-^T
        wp, wn = w.clamp(min=0), w.clamp(max=0)
        ap, an = a.clamp(min=0), a.clamp(max=0)
        z = ap @ wp.T + an @ wn.T + b.clamp(min=0)
        s = r / (z + 1e-6 * torch.where(z >= 0, 1.0, -1.0))
        return ap * (s @ wp) + an * (s @ wn)

    lin1, bn, lin2 = model[0], model[1], model[3]
    with torch.no_grad():
        h1 = lin1(x)
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        h2 = bn(h1)
        a = h2.clamp(min=0)
        out = lin2(a)
    r_out = torch.zeros_like(out).scatter_(1, targets[:, None], out.gather(1, targets[:, None]))
    r_a = zplus(a, lin2.weight, lin2.bias, r_out)
    r_h2 = r_a * (h2 > 0)                      # the ReLU's gradient
    excitation = zplus(x, lin1.weight, lin1.bias, r_h2 * scale)   # the batch norm's gradient
    lrp = zplus(x, lin1.weight, lin1.bias, r_h2)                  # Pass: unchanged

    layers = LayerGroups(groups={"all": ["0", "3"]}, first_layer="0")
    low, high = torch.full((1, 3), -3.0, dtype=torch.float64), torch.full((1, 3), 3.0, dtype=torch.float64)
    for base, hand in [("excitation_backprop", excitation), ("lrp", lrp)]:
        spec = ExplainerSpec(canonize=False, first_layer="same", groups={"all": GroupRule("zplus")}, base=base)
        got = LrpExplainer(spec, model, layers, low=low, high=high, batch_budget=2)(x, targets)
        torch.testing.assert_close(got, hand.sum(1, keepdim=True), rtol=1e-12, atol=1e-14)
    assert (excitation - lrp).abs().max() > 0.1  # the two differ on this network
    torch.testing.assert_close(zennit_excitation_backprop(model, x, targets), excitation.sum(1, keepdim=True),
                               rtol=1e-12, atol=1e-14)


SPACE = {"canonize": [True, False], "first_layer": ["zbox", "same"], "layer_groups": 2,
         "rules": ["gamma", "zplus"], "gamma": [0.25], "epsilon": [1e-6],
         "overrides": {"classifier": {"rules": ["epsilon", "zplus"]}}}


def _space(**changes):
    cfg = parse_config({"name": "eb", "space": {**SPACE, **changes}, "metrics": ["sparseness"]})
    layers = LayerGroups(groups={"conv1": ["a"], "conv2": ["b"], "classifier": ["c"]}, first_layer="a")
    return SearchSpace(cfg.space, layers)


def test_base_is_a_search_dimension():
    space = _space(base=["lrp", "excitation_backprop"])
    assert space.grid_space()["base"] == ["lrp", "excitation_backprop"]
    assert space.size() == 2 * 2 * 2 * 2 * 2 * 2  # canonize, first layer, base, 2 settings for each of 3 groups
    assert _space().size() == space.size() // 2 and "base" not in _space().grid_space()
    params = {"canonize": False, "first_layer": "same", "base": "excitation_backprop",
              "conv1.rule": "zplus", "conv2.rule": "zplus", "classifier.rule": "zplus"}
    spec = space.suggest(optuna.trial.FixedTrial(params))
    assert spec.base == "excitation_backprop"
    assert spec.describe() == ("canonize=no first=same base=excitation_backprop conv1=zplus conv2=zplus "
                               "classifier=zplus")
    assert ExplainerSpec.from_dict(spec.to_dict()) == spec
    # an lrp spec's document has no base key: documents and caches written before the field read the same
    lrp = ExplainerSpec(canonize=False, first_layer="same", groups={"conv1": GroupRule("zplus")})
    assert "base" not in lrp.to_dict() and ExplainerSpec.from_dict(lrp.to_dict()).base == "lrp"


def test_excitation_backprop_baseline():
    space = _space(base=["lrp", "excitation_backprop"])
    trials = dict(baseline_trials(["excitation_backprop", "epsilon_plus:plain"], space))
    assert trials["excitation_backprop:canonized"] == {
        "canonize": True, "first_layer": "same", "base": "excitation_backprop",
        "conv1.rule": "zplus", "conv2.rule": "zplus", "classifier.rule": "zplus"}
    assert trials["epsilon_plus:plain"]["base"] == "lrp"
    with pytest.raises(ConfigError, match=r"^baseline excitation_backprop:canonized: needs base='excitation_backprop', "
                                          r"but the search space allows only \['lrp'\] \(add it to space.base, or "
                                          r"drop the baseline\)$"):
        baseline_trials(["excitation_backprop"], _space())


def test_unknown_base_is_one_line():
    with pytest.raises(ConfigError) as err:
        _space(base=["lrp", "eb"])
    text = str(err.value)
    assert "\n" not in text and "space.base" in text and "'eb'" in text and "excitation_backprop" in text
