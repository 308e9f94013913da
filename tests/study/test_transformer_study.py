"""A study on a Vision Transformer through the command line: the attention rule is a search
dimension, the groups go by block depth, the export loads back into the trial's attributions, and a
user's mistakes are one line and exit 2."""

from __future__ import annotations

import json

import optuna
import pytest
import torch
import yaml

from xaiopt.cli import main
from xaiopt.objective.attrs import explainer_text, spec_dict

VIT = {
    "name": "vit",
    "seed": 0,
    "device": "cpu",
    "model": {"name": "benchmark:vit", "weights": "random"},
    "data": {"name": "benchmark", "n_samples": 6},
    "space": {
        "canonize": [True, False],
        "first_layer": ["zbox", "same"],
        "layer_groups": 2,
        "attention": ["attnlrp", "cp"],
        "rules": ["gamma", "epsilon"],
        "gamma": [0.1, 0.25],
        "epsilon": [1e-6, 0.1],
    },
    "metrics": ["sparseness", {"name": "region_perturbation", "params": {"patch_size": 8, "regions": 4}},
                "relevance_mass_accuracy"],
    "sampler": {"name": "random"},
    "runtime": {"heatmaps": 0},
}


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _write(tmp_path, cfg, name="vit.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def vit_study(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("vit-study")
    storage = f"sqlite:///{tmp_path / 'vit.db'}"
    path = _write(tmp_path, VIT)
    assert main(["study", "create", str(path), "--storage", storage]) == 0
    assert main(["study", "optimize", "vit", "--n-trials", "6", "--storage", storage, "--no-progress"]) == 0
    return tmp_path, storage


def test_the_attention_rule_and_block_groups_are_searched(vit_study):
    _, storage = vit_study
    study = optuna.load_study(study_name="vit", storage=storage)
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == 6
    for t in trials:
        assert t.params["attention"] in ("attnlrp", "cp")
        assert {"blocks1.rule", "blocks2.rule", "head.rule"} <= set(t.params)
        assert spec_dict(t)["attention"] == t.params["attention"]
        assert f"attention={t.params['attention']}" in explainer_text(t)
        assert all(v == v for v in t.values)  # no NaN


def test_the_json_export_loads_back_into_the_trials_attributions(vit_study, capsys):
    tmp_path, storage = vit_study
    out = tmp_path / "best.json"
    code, _, err = run(capsys, "study", "export", "vit", "--storage", storage, "--out", str(out))
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["spec"]["attention"] in ("attnlrp", "cp")

    import xaiopt
    from xaiopt.config import load_config
    from xaiopt.lrp import LrpExplainer
    from xaiopt.objective.benchmark import get_benchmark
    from xaiopt.space import ExplainerSpec

    bench = get_benchmark(load_config(str(_write(tmp_path, VIT, "again.yaml"))), torch.device("cpu"))
    spec = ExplainerSpec.from_dict(doc["spec"])
    model = bench.twin if spec.canonize else bench.model
    layers = bench.twin_layers if spec.canonize else bench.layers
    expected = LrpExplainer(spec, model, layers, low=bench.low, high=bench.high, batch_budget=8)(bench.x, bench.y)
    got = xaiopt.load_explainer(str(out), bench.model)(bench.x, bench.y)
    assert expected.abs().max() > 0
    assert (got - expected).abs().max() <= 1e-6 * expected.abs().max()
    with pytest.raises(xaiopt.XaioptError, match="load_explainer"):
        xaiopt.load_composite(str(out), bench.model)
    code, _, err = run(capsys, "study", "export", "vit", "--storage", storage, "--out", str(tmp_path / "best.py"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "export it as JSON" in err
    assert not (tmp_path / "best.py").exists()


@pytest.mark.parametrize("change,message", [
    ({"model": {"name": "benchmark:vgg"}, "space": {**VIT["space"], "layer_groups": 2}},
     "space.attention: the model runs no attention"),
    ({"runtime": {"engine": "zennit", "heatmaps": 0}}, "runtime.engine: zennit cannot explain a transformer"),
    ({"space": {**VIT["space"], "layer_groups": 9}}, "9 block groups asked for"),
    ({"space": {**VIT["space"], "layer_groups": [{"name": "qkv", "modules": ["blocks.*.attn.nothing"]}]}},
     "matches no Conv/Linear layer"),
    ({"space": {**VIT["space"], "attention": ["softmax"]}}, "unknown attention rule 'softmax'"),
    ({"model": {"name": "benchmark:vgg"}, "space": {**{k: v for k, v in VIT["space"].items() if k != "attention"},
                                                     "layer_groups": {"blocks": 2}}},
     "groups a transformer's blocks, but the model runs no attention"),
    ({"space": {**VIT["space"], "layer_groups": {"blocks": 0}}}, "number of block groups must be >= 1"),
    ({"space": {**VIT["space"], "layer_groups": {"blocks": 2, "sublayer": True}}}, "sublayer"),
    ({"space": {**VIT["space"], "layer_groups": {"blocks": 2}, "overrides": {"blocks3_qkv": {"rules": ["gamma"]}}}},
     "blocks3_qkv"),
])
def test_a_users_mistake_is_one_line_and_exit_2(tmp_path, capsys, change, message):
    path = _write(tmp_path, {**VIT, **change})
    storage = f"sqlite:///{tmp_path / 'bad.db'}"
    code, out, err = run(capsys, "study", "create", str(path), "--storage", storage)
    assert code == 2
    lines = [line for line in err.strip().splitlines() if not line.startswith("xaiopt: [")]
    assert len(lines) == 1 and message in lines[0], err
    assert not optuna.get_all_study_summaries(storage)


def test_groups_by_depth_and_sublayer_are_searched_with_their_own_overrides(tmp_path, capsys):
    """{blocks: 2, sublayers: true}: blocks1_qkv .. blocks2_other and head, each a search dimension, on
    the model and on its canonized twin (whose split q, k, v Linears are qkv too)."""
    from xaiopt.study.manage import GROUPS_ATTR, TWIN_GROUPS_ATTR

    space = {**VIT["space"], "layer_groups": {"blocks": 2, "sublayers": True},
             "overrides": {"blocks2_fc2": {"rules": ["epsilon"], "epsilon": [0.5]}}}
    storage = f"sqlite:///{tmp_path / 'sub.db'}"
    path = _write(tmp_path, {**VIT, "name": "sub", "space": space})
    assert run(capsys, "study", "create", str(path), "--storage", storage)[0] == 0
    assert run(capsys, "study", "optimize", "sub", "--n-trials", "3", "--storage", storage, "--no-progress")[0] == 0
    study = optuna.load_study(study_name="sub", storage=storage)
    groups, twin = study.user_attrs[GROUPS_ATTR], study.user_attrs[TWIN_GROUPS_ATTR]
    # benchmark:vit has 3 blocks: blocks1 = blocks 0 and 1 (+ the patch embedding), blocks2 = block 2
    assert groups["blocks1_qkv"] == ["blocks.0.attn.qkv", "blocks.1.attn.qkv"]
    assert groups["blocks2_qkv"] == ["blocks.2.attn.qkv"]
    assert groups["blocks1_proj"] == ["blocks.0.attn.proj", "blocks.1.attn.proj"]
    assert groups["blocks2_fc1"] == ["blocks.2.mlp.fc1"] and groups["blocks2_fc2"] == ["blocks.2.mlp.fc2"]
    assert groups["blocks1_other"] == ["patch_embed"] and groups["blocks2_other"] == []
    assert groups["head"] == ["head"]
    assert twin["blocks2_qkv"] == ["blocks.2.attn.qkv.q", "blocks.2.attn.qkv.k", "blocks.2.attn.qkv.v"]
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == 3
    for t in trials:
        assert {"blocks1_qkv.rule", "blocks2_fc1.rule", "head.rule"} <= set(t.params)
        assert "blocks2_fc2.rule" not in t.params  # one rule, one value: a constant, not a dimension
        assert spec_dict(t)["groups"]["blocks2_fc2"] == {"rule": "epsilon", "value": 0.5}
