"""Study YAML validation: good files load, every kind of mistake is one line naming the field."""

from pathlib import Path

import pytest

from xaiopt.config import Choices, Range, load_config, parse_config
from xaiopt.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_loads():
    cfg = load_config(ROOT / "studies" / "quickstart.yaml")
    assert cfg.name == "quickstart"
    assert cfg.space.gamma == Choices(choices=[0, 0.1, 0.25, 0.5, 1, 10])
    assert [m.name for m in cfg.metrics] == [
        "sparseness", "region_perturbation", "relevance_rank_accuracy", "relevance_mass_accuracy",
        "avg_sensitivity", "random_logit",
    ]
    assert cfg.space.group_names() == ["conv1", "conv2", "conv3", "classifier"]
    assert cfg.space.overrides["classifier"].rules == ["epsilon", "gamma"]


def test_defaults_and_forms():
    cfg = parse_config({
        "space": {"gamma": {"low": 0.01, "high": 10, "log": True}, "epsilon": [1e-3],
                  "layer_groups": [{"name": "low", "modules": ["features.0"]}, {"name": "top", "modules": ["fc*"]}]},
        "metrics": ["sparseness", {"name": "region_perturbation", "params": {"patch_size": 4}}],
        "sampler": "random",
    })
    assert cfg.space.gamma == Range(low=0.01, high=10, log=True)
    assert cfg.space.epsilon == Choices(choices=[1e-3])
    assert cfg.space.group_names() == ["low", "top"]
    assert cfg.metrics[1].params == {"patch_size": 4}
    assert cfg.sampler.name == "random"
    assert parse_config(None).device == "auto"


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"bogus": 1}, "(top level): unknown key 'bogus' (valid: name, n_trials"),
        ({"space": {"rule": ["gamma"]}}, "space: unknown key 'rule' (valid: rules, gamma, epsilon"),
        ({"space": {"rules": ["gamma", "lrp"]}}, "space.rules: unknown rule 'lrp' (valid: epsilon, gamma"),
        ({"space": {"first_layer": ["box"]}}, "space.first_layer: unknown first-layer rule 'box' (valid: zbox, flat"),
        ({"space": {"gamma": []}}, "space.gamma.choices: empty list; give at least one value"),
        ({"space": {"gamma": [-1]}}, "space.gamma: gamma must be >= 0"),
        ({"space": {"epsilon": [0]}}, "space.epsilon: epsilon must be > 0"),
        ({"space": {"gamma": {"low": 1, "high": 0.1}}}, "space.gamma: low (1.0) must not exceed high (0.1)"),
        ({"space": {"gamma": {"low": 0, "high": 1, "log": True}}}, "space.gamma: a log range needs low > 0"),
        ({"space": {"rules": []}}, "space.rules: empty list"),
        ({"space": {"canonize": []}}, "space.canonize: empty list"),
        ({"space": {"layer_groups": 0}}, "space.layer_groups: the number of automatic conv groups must be >= 1"),
        ({"space": {"overrides": {"conv9": {}}}}, "overrides names unknown layer group 'conv9' (groups: conv1"),
        ({"sampler": "cmaes"},
         "sampler.name: unknown sampler 'cmaes' (valid: tpe, tpe-decision, nsga2, nsga3, gp, random, grid"),
        ({"sampler": "grid", "space": {"gamma": {"low": 0.1, "high": 1}}},
         "sampler 'grid' needs value lists: space.gamma is a range"),
        ({"metrics": []}, "metrics: empty list; name at least one metric"),
        ({"metrics": ["sparseness", "sparseness"]}, "metrics: metric named twice: sparseness"),
        ({"metrics": [{"name": "sparseness", "param": {}}]}, "metrics: unknown key 'param' (valid: name, params)"),
        ({"data": {"n_samples": "many"}}, "data.n_samples: Input should be a valid integer"),
        ({"data": {"n_samples": 0}}, "data.n_samples: n_samples must be >= 1, got 0"),
        ({"device": "tpu"}, "device: unknown device 'tpu' (valid: auto, cpu, cuda, cuda:N)"),
        ({"model": {"name": "resnet18"}}, "model.name: model 'resnet18' is not of the form benchmark:NAME"),
        ([1, 2], "the top level must be a mapping"),
        ({"space": {"layer_groups": "all"}},
         "space.layer_groups: expected an integer (automatic groups), a list of {name, modules} or {blocks, sublayers}, got 'all'"),
        ({"space": {"gamma": 0.25}}, "space.gamma: expected a list of values or {low, high, log}, got 0.25"),
    ],
)
def test_mistakes_are_one_line(data, expected):
    with pytest.raises(ConfigError) as err:
        parse_config(data, source="s.yaml")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("s.yaml: ")
    assert expected in msg, msg


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("space:\n  rules: [gamma\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+, column \d+"):
        load_config(bad)
    ok = tmp_path / "ok.yaml"
    ok.write_text("name: x\nspace:\n  rules: [zplus]\n")
    assert load_config(ok).space.rules == ["zplus"]
