"""Search space: groups, every rule builds a composite that runs, equality with zennit's own composites."""

import optuna
import pytest
import torch
from torch import nn
from zennit.composites import EpsilonGammaBox, EpsilonPlusFlat

from xaiopt.config import parse_config
from xaiopt.errors import ConfigError
from xaiopt.objective.explain import explainer_for
from xaiopt.space import ExplainerSpec, GroupRule, SearchSpace, resolve_groups, rule_names


def small_vgg() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4),
    ).eval()


LOW = torch.full((1, 3, 1, 1), -2.0)
HIGH = torch.full((1, 3, 1, 1), 2.0)


def explain(spec, model, layers, x, y):
    with explainer_for(spec, model, layers, low=LOW, high=HIGH, batch_budget=3) as ex:
        return ex(x, y)


def test_auto_groups_follow_forward_order():
    model = small_vgg()
    x = torch.randn(1, 3, 8, 8)
    g = resolve_groups(model, x, 3)
    assert g.groups == {"conv1": ["0", "2"], "conv2": ["5"], "conv3": ["7"], "classifier": ["11", "13"]}
    assert g.first_layer == "0"
    with pytest.raises(ConfigError, match="5 conv groups asked for, but the model has only 4 conv layers"):
        resolve_groups(model, x, 5)


def test_explicit_groups_and_globs():
    model = small_vgg()
    cfg = parse_config({"space": {"layer_groups": [{"name": "a", "modules": ["0", "2"]},
                                                   {"name": "b", "modules": ["[57]", "1*"]}]}})
    g = resolve_groups(model, torch.randn(1, 3, 8, 8), cfg.space.layer_groups)
    assert g.groups == {"a": ["0", "2"], "b": ["5", "7", "11", "13"]}
    bad = parse_config({"space": {"layer_groups": [{"name": "a", "modules": ["features.*"]}]}})
    with pytest.raises(ConfigError, match="'features.\\*' matches no Conv/Linear layer"):
        resolve_groups(model, torch.randn(1, 3, 8, 8), bad.space.layer_groups)


@pytest.mark.parametrize("rule", ["epsilon", "gamma", "alpha2beta1", "alpha1beta0", "zplus", "flat", "wsquare"])
@pytest.mark.parametrize("first", ["zbox", "flat", "wsquare", "same"])
def test_every_rule_builds_a_composite_that_runs(rule, first):
    model = small_vgg()
    x = torch.randn(4, 3, 8, 8)
    y = torch.tensor([0, 1, 2, 3])
    layers = resolve_groups(model, x, 2)
    value = {"epsilon": 0.01, "gamma": 0.25}.get(rule)
    spec = ExplainerSpec(canonize=False, first_layer=first,
                         groups={g: GroupRule(rule, value) for g in layers.groups})
    a = explain(spec, model, layers, x, y)
    assert a.shape == (4, 1, 8, 8)
    assert torch.isfinite(a).all() and a.abs().sum() > 0
    # hooks are gone afterwards: plain gradients again
    xg = x.clone().requires_grad_(True)
    model(xg)[:, 0].sum().backward()
    assert xg.grad is not None and torch.isfinite(xg.grad).all()


def _zennit_reference(composite, model, x, y):
    with composite.context(model) as m:
        xg = x.clone().requires_grad_(True)
        out = m(xg)
        seed = torch.zeros_like(out).scatter_(1, y[:, None], out.gather(1, y[:, None]).detach())
        (r,) = torch.autograd.grad(out, xg, grad_outputs=seed)
    return r.sum(1, keepdim=True)


def test_equals_zennit_epsilon_gamma_box():
    model = small_vgg().double()
    x = torch.randn(5, 3, 8, 8, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0])
    layers = resolve_groups(model, x, 3)
    spec = ExplainerSpec(canonize=False, first_layer="zbox", groups={
        "conv1": GroupRule("gamma", 0.25), "conv2": GroupRule("gamma", 0.25), "conv3": GroupRule("gamma", 0.25),
        "classifier": GroupRule("epsilon", 1e-6)})
    ours = explain(spec, model, layers, x, y)
    ref = _zennit_reference(EpsilonGammaBox(low=LOW.double(), high=HIGH.double(), epsilon=1e-6, gamma=0.25),
                            model, x, y)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


def test_equals_zennit_epsilon_plus_flat():
    model = small_vgg().double()
    x = torch.randn(5, 3, 8, 8, dtype=torch.float64)
    y = torch.tensor([3, 2, 1, 0, 1])
    layers = resolve_groups(model, x, 1)
    spec = ExplainerSpec(canonize=False, first_layer="flat",
                         groups={"conv1": GroupRule("zplus"), "classifier": GroupRule("epsilon", 1e-6)})
    ours = explain(spec, model, layers, x, y)
    ref = _zennit_reference(EpsilonPlusFlat(epsilon=1e-6), model, x, y)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


def test_conservation_of_lrp0_on_a_bias_free_net():
    # with no biases and the (nearly) LRP-0 rule, input relevance sums to the explained logit
    model = small_vgg().double()
    for m in model.modules():
        if getattr(m, "bias", None) is not None:
            nn.init.zeros_(m.bias)
    x = torch.randn(6, 3, 8, 8, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    layers = resolve_groups(model, x, 2)
    spec = ExplainerSpec(canonize=False, first_layer="same", groups={g: GroupRule("epsilon", 1e-9) for g in layers.groups})
    a = explain(spec, model, layers, x, y)
    logits = model(x).gather(1, y[:, None]).squeeze(1)
    # the avg-pool's Norm rule and the epsilon add stabilizers of ~1e-6: a leak far below 0.1%
    torch.testing.assert_close(a.flatten(1).sum(1), logits, rtol=1e-3, atol=1e-6)


def _space(cfg_space, grid=False):
    cfg = parse_config({"space": cfg_space, "sampler": "grid" if grid else "tpe"})
    layers = resolve_groups(small_vgg(), torch.randn(1, 3, 8, 8), cfg.space.layer_groups)
    return SearchSpace(cfg.space, layers, grid=grid)


def test_define_by_run_is_conditional():
    space = _space({"layer_groups": 2, "rules": ["gamma", "zplus", "epsilon"], "gamma": [0.1, 1.0],
                    "epsilon": {"low": 1e-4, "high": 1, "log": True}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        spec = space.suggest(trial)
        for g, r in spec.groups.items():
            seen.add(r.rule)
            assert (f"{g}.gamma" in trial.params) == (r.rule == "gamma")
            assert (f"{g}.epsilon" in trial.params) == (r.rule == "epsilon")
            if r.rule == "gamma":
                assert r.value in (0.1, 1.0)
            elif r.rule == "epsilon":
                assert 1e-4 <= r.value <= 1
            else:
                assert r.value is None
        study.tell(trial, 0.0)
    assert seen == {"gamma", "zplus", "epsilon"}
    assert ExplainerSpec.from_dict(spec.to_dict()) == spec


def test_grid_space_is_the_paper_grid():
    space = _space({"layer_groups": 2, "rules": ["gamma"], "gamma": [0, 0.25, 1], "canonize": [True, False],
                    "first_layer": ["zbox"], "overrides": {"classifier": {"rules": ["epsilon"], "epsilon": [1e-6]}}},
                   grid=True)
    grid = space.grid_space()
    assert grid == {"canonize": [True, False], "conv1.setting": ["gamma=0", "gamma=0.25", "gamma=1"],
                    "conv2.setting": ["gamma=0", "gamma=0.25", "gamma=1"]}
    assert space.size() == 18
    study = optuna.create_study(sampler=optuna.samplers.GridSampler(grid, seed=0))
    specs = []

    def objective(t):
        specs.append(space.suggest(t).describe())
        return 0.0

    study.optimize(objective, n_trials=30)  # the grid sampler stops the study when the grid is done
    assert len(specs) == 18 and len(set(specs)) == 18
    assert all("classifier=epsilon(1e-06)" in s for s in specs)


def test_rule_registry_names():
    assert set(rule_names()) == {"epsilon", "gamma", "alpha2beta1", "alpha1beta0", "zplus", "flat", "wsquare",
                                 "zbox", "pass", "excitation_backprop"}
