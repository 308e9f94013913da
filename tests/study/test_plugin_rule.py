"""A rule registered by a plugin is a search dimension of a YAML study: its name validates in every
process that lists the plugin, its parameter is searched from ``space.params``, the trials' attributions
are those of a zennit composite built by hand with that rule and value, and both exports carry it.
A process without the plugin stops with one line."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from optuna.trial import TrialState
from zennit.attribution import Gradient
from zennit.composites import LayerMapComposite
from zennit.rules import Epsilon, Norm, Pass
from zennit.types import Activation, AvgPool, BatchNorm, Convolution, Linear

import xaiopt
from xaiopt.cli import main
from xaiopt.errors import ConfigError
from xaiopt.objective.attrs import spec_dict
from xaiopt.objective.benchmark import get_benchmark
from xaiopt.objective.explain import Explainer, explainer_for
from xaiopt.space import ExplainerSpec
from xaiopt.study import load_study, per_sample_scores
from xaiopt.study.attribute import attribute_settings
from xaiopt.zoo import load_model

from .conftest import xaiopt as xaiopt_argv

PLUGIN = "lab_stabilizer_rules"
# an Epsilon-like rule whose parameter is called `stabilizer`, and a metric that exposes each trial's
# attributions (their per-sample L1 norm, stored with the trial)
PLUGIN_SOURCE = textwrap.dedent('''
    from zennit.rules import Epsilon

    from xaiopt.metrics import register_metric
    from xaiopt.space import register_rule


    class StabilizedEpsilon(Epsilon):
        def __init__(self, stabilizer):
            super().__init__(epsilon=float(stabilizer))


    register_rule("lab_stab_eps", param="stabilizer", code="StabilizedEpsilon(stabilizer={param!r})")(
        StabilizedEpsilon)


    @register_metric("lab_l1", category="complexity", direction="minimize", passes="none")
    def lab_l1(ctx):
        return ctx.attributions.abs().flatten(1).sum(1)
''')

CLASSIFIER_EPSILON = 0.01


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plugin")
    (folder / f"{PLUGIN}.py").write_text(PLUGIN_SOURCE)
    yield folder
    # later tests list the valid rule and metric names of this process: forget the plugin's
    from xaiopt.config import rule_names
    from xaiopt.metrics import registry
    from xaiopt.space import rules

    rules._RULES.pop("lab_stab_eps", None)
    rule_names._DECLARED.pop("lab_stab_eps", None)
    registry._REGISTRY.pop("lab_l1", None)
    sys.modules.pop(PLUGIN, None)


@pytest.fixture
def plugin_path(plugin_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_dir))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(plugin_dir), os.environ.get("PYTHONPATH", "")]))
    return plugin_dir


def study_file(tmp_path: Path, name: str, **space) -> Path:
    cfg = {
        "name": name, "seed": 5, "device": "cpu", "n_trials": 3, "plugins": [PLUGIN],
        "model": {"name": "benchmark:vgg"}, "data": {"name": "benchmark", "n_samples": 4},
        "space": {"canonize": [False], "first_layer": ["same"], "layer_groups": 1, "rules": ["lab_stab_eps"],
                  "params": {"stabilizer": {"low": 1e-3, "high": 1.0, "log": True}},
                  "overrides": {"classifier": {"rules": ["epsilon"], "epsilon": [CLASSIFIER_EPSILON]}},
                  **space},
        "metrics": ["sparseness", "lab_l1"], "sampler": "random", "runtime": {"heatmaps": 0},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def by_hand(x: torch.Tensor, y: torch.Tensor, stabilizer: float) -> torch.Tensor:
    """The trial's explainer as a plain zennit composite: epsilon = the trial's stabilizer on every conv,
    the classifier's epsilon on the linear layers, zennit's usual Pass / Norm elsewhere."""
    model = load_model("benchmark:vgg").eval()
    composite = LayerMapComposite([
        (Activation, Pass()), (BatchNorm, Pass()), (AvgPool, Norm()),
        (Convolution, Epsilon(epsilon=stabilizer)), (Linear, Epsilon(epsilon=CLASSIFIER_EPSILON)),
    ])
    with Gradient(model, composite) as attributor:
        _, relevance = attributor(x, lambda out: torch.zeros_like(out).scatter_(1, y.view(-1, 1),
                                                                                out.gather(1, y.view(-1, 1))))
    return relevance.sum(1, keepdim=True)


def run(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(xaiopt_argv(*argv), capture_output=True, text=True, env=env, timeout=300, check=False,
                          cwd=Path(__file__).resolve().parents[2])


def test_a_plugin_rule_is_searched_from_yaml(tmp_path, plugin_path, capsys):
    storage = f"sqlite:///{tmp_path / 'rules.db'}"
    assert main(["study", "create", str(study_file(tmp_path, "plugrule")), "--storage", storage]) == 0
    assert main(["study", "optimize", "plugrule", "--storage", storage, "--n-trials", "2", "--device", "cpu"]) == 0
    # a worker process reads the config from the storage: it imports the plugin before validating it
    worker = run("worker", "--storage", storage, "--study", "plugrule", "--device", "cpu", "--no-progress",
                 env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert worker.returncode == 0, worker.stderr[-2000:]
    capsys.readouterr()

    loaded = load_study("plugrule", storage=storage)
    trials = [t for t in loaded.study.trials if t.state == TrialState.COMPLETE]
    assert len(trials) == 3 and loaded.study.metric_names == ["sparseness", "lab_l1"]
    values = [t.params["conv1.stabilizer"] for t in trials]
    assert all(1e-3 <= v <= 1.0 for v in values) and len(set(values)) == 3
    for t in trials:
        assert "conv1.rule" not in t.params  # one rule: a constant, not a dimension
        assert spec_dict(t)["groups"]["conv1"] == {"rule": "lab_stab_eps", "value": t.params["conv1.stabilizer"]}
        assert t.user_attrs["explainer"].split()[2] == f"conv1=lab_stab_eps({t.params['conv1.stabilizer']:g})"

    got = attribute_settings(loaded, [spec_dict(t) for t in trials], images=4, device="cpu")
    for t, ours in zip(trials, got.attributions):
        want = by_hand(got.images, got.targets, t.params["conv1.stabilizer"])
        scale = float(want.abs().max())
        assert scale > 0 and float((ours - want).abs().max()) <= 1e-5 * scale
        # what the trial itself computed (its stored per-sample L1 norms) is the hand-built composite's
        np.testing.assert_allclose(per_sample_scores(t)["lab_l1"], want.abs().flatten(1).sum(1).double().numpy(),
                                   rtol=1e-5)
    # xaiopt's LRP engine has no implementation of the plugin's rule: the trials ran the zennit composite
    bench = get_benchmark(loaded.config, torch.device("cpu"))
    model, layers = bench.model_for(False)
    with explainer_for(ExplainerSpec.from_dict(spec_dict(trials[0])), model, layers, low=bench.low, high=bench.high,
                       batch_budget=8, engine="xaiopt", lrp_cache_mb=64) as explain:
        assert type(explain) is Explainer
    # different stabilizers give different attributions: the parameter reaches the rule
    first, second = got.attributions[0], got.attributions[1]
    assert float((first - second).abs().max()) > 1e-4 * float(first.abs().max())

    # both exports carry the rule and its value
    t = trials[0]
    x, targets = got.images, got.targets
    want = by_hand(x, targets, t.params["conv1.stabilizer"])
    as_json, as_py = tmp_path / "t0.json", tmp_path / "t0.py"
    for out in (as_json, as_py):
        assert main(["study", "export", "plugrule", "--storage", storage, "--trial", str(t.number),
                     "--out", str(out)]) == 0
    doc = json.loads(as_json.read_text())
    assert doc["plugins"] == [PLUGIN] and doc["spec"]["groups"]["conv1"]["rule"] == "lab_stab_eps"
    assert f"from {PLUGIN} import StabilizedEpsilon" in as_py.read_text()
    spec = importlib.util.spec_from_file_location("exported_t0", as_py)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for composite in (xaiopt.load_composite(as_json, load_model("benchmark:vgg").eval()), module.make_composite()):
        model = load_model("benchmark:vgg").eval()
        with Gradient(model, composite) as attributor:
            _, rel = attributor(x, lambda out: torch.zeros_like(out).scatter_(1, targets.view(-1, 1),
                                                                              out.gather(1, targets.view(-1, 1))))
        assert float((rel.sum(1, keepdim=True) - want).abs().max()) <= 1e-5 * float(want.abs().max())


def test_a_worker_without_the_plugin_stops_with_one_line(tmp_path, plugin_path):
    storage = f"sqlite:///{tmp_path / 'nowhere.db'}"
    assert main(["study", "create", str(study_file(tmp_path, "plugrule2")), "--storage", storage]) == 0
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    worker = run("worker", "--storage", storage, "--study", "plugrule2", "--device", "cpu", "--no-progress", env=env)
    assert worker.returncode == 2
    lines = worker.stderr.strip().splitlines()
    assert len(lines) == 1, worker.stderr
    assert f"plugins: module {PLUGIN!r} cannot be imported" in lines[0] and "PYTHONPATH" in lines[0]


def test_the_json_export_needs_the_plugin_imported(tmp_path, plugin_path, monkeypatch):
    importlib.import_module(PLUGIN)
    from xaiopt.space import rules

    storage = f"sqlite:///{tmp_path / 'json.db'}"
    assert main(["study", "create", str(study_file(tmp_path, "plugrule3")), "--storage", storage]) == 0
    assert main(["study", "optimize", "plugrule3", "--storage", storage, "--n-trials", "1", "--device", "cpu"]) == 0
    out = tmp_path / "t.json"
    assert main(["study", "export", "plugrule3", "--storage", storage, "--trial", "0", "--out", str(out)]) == 0
    # a process that never imported the plugin: neither the module nor its rule
    monkeypatch.delitem(sys.modules, PLUGIN)
    monkeypatch.setattr(rules, "_RULES", {k: v for k, v in rules._RULES.items() if k != "lab_stab_eps"})
    with pytest.raises(ConfigError) as err:
        xaiopt.load_composite(out, load_model("benchmark:vgg").eval())
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("spec.groups.conv1.rule: unknown rule 'lab_stab_eps' (valid: epsilon, gamma")
    assert f"plugin module(s) {PLUGIN!r}: import them before load_composite" in message


@pytest.mark.parametrize("space, message", [
    ({"params": {}}, "space: rule 'lab_stab_eps' is searched but no stabilizer values are given "
                     "(set space.params.stabilizer: a list of values or {low, high, log})"),
    ({"params": {"stabiliser": [0.1]}}, "space.params: no registered rule takes a parameter 'stabiliser' "
                                        "(valid: "),
    ({"rules": ["lab_stab_epsilon"]}, "space.rules: unknown rule 'lab_stab_epsilon' (valid: epsilon, gamma, "
                                      "alpha2beta1, alpha1beta0, zplus, flat, wsquare, "),
    ({"params": {"stabilizer": "small"}}, "space.params.stabilizer: expected a list of values or {low, high, log}, "
                                          "got 'small'"),
])
def test_plugin_rule_mistakes_are_one_line(tmp_path, plugin_path, capsys, space, message):
    storage = f"sqlite:///{tmp_path / 'bad.db'}"
    assert main(["study", "create", str(study_file(tmp_path, "badrule", **space)), "--storage", storage]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    if "valid" in message:  # the valid names include the plugin's, whatever else this process registered
        assert "lab_stab_eps" in err.split("(valid: ", 1)[1], err
    assert not (tmp_path / "bad.db").exists()
