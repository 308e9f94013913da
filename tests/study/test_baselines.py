"""Baselines in the study's parameter names, refused when the space cannot express them."""

from __future__ import annotations

import pytest

from xaiopt.config import parse_config
from xaiopt.errors import ConfigError, UnknownNameError
from xaiopt.space import SearchSpace
from xaiopt.space.groups import LayerGroups
from xaiopt.study.baselines import baseline_trials

LAYERS = LayerGroups(groups={"conv1": ["f.0"], "conv2": ["f.3"], "classifier": ["c.0"]}, first_layer="f.0")


def _space(sampler="random", **space):
    cfg = parse_config({"space": {"layer_groups": 2, **space}, "sampler": sampler})
    return SearchSpace(cfg.space, LAYERS, grid=sampler == "grid")


def test_gamma_box_in_the_default_space():
    [(label, params)] = baseline_trials(["epsilon_gamma_box:canonized"], _space())
    assert label == "epsilon_gamma_box:canonized"
    assert params == {"canonize": True, "first_layer": "zbox", "conv1.rule": "gamma", "conv1.gamma": 0.25,
                      "conv2.rule": "gamma", "conv2.gamma": 0.25, "classifier.rule": "epsilon",
                      "classifier.epsilon": 1e-6}


def test_each_variant_once_and_single_choices_left_out():
    space = _space(canonize=[False], first_layer=["same", "flat"], rules=["zplus", "epsilon"],
                   epsilon=[1e-6], overrides={"classifier": {"rules": ["epsilon"]}})
    out = baseline_trials(["epsilon_plus", "epsilon_plus:plain", "epsilon_plus_flat"], space)
    assert [label for label, _ in out] == ["epsilon_plus:plain", "epsilon_plus_flat:plain"]
    # canonize, classifier.rule and epsilon have one value each: not search dimensions, not params
    assert out[0][1] == {"first_layer": "same", "conv1.rule": "zplus", "conv2.rule": "zplus"}


def test_grid_settings():
    space = _space("grid", first_layer=["zbox", "flat"], rules=["gamma", "epsilon"], gamma=[0.25, 1.0],
                   epsilon=[1e-6, 0.1])
    [(_, params)] = baseline_trials(["epsilon_gamma_box:plain"], space)
    assert params == {"canonize": False, "first_layer": "zbox", "conv1.setting": "gamma=0.25",
                      "conv2.setting": "gamma=0.25", "classifier.setting": "epsilon=1e-06"}


def test_outside_the_space_is_refused():
    with pytest.raises(ConfigError, match=r"conv1.gamma=0.25, but the search space allows \[0.1, 1.0\]"):
        baseline_trials(["epsilon_gamma_box"], _space(gamma=[0.1, 1.0]))
    with pytest.raises(ConfigError, match="first_layer='zbox'"):
        baseline_trials(["epsilon_gamma_box"], _space(first_layer=["flat", "same"]))
    with pytest.raises(UnknownNameError, match="unknown variant 'raw'"):
        baseline_trials(["epsilon_plus:raw"], _space())
