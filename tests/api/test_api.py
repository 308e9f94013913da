"""The Python API: studies from Python objects and from YAML, custom objectives, the front's results."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

import xaiopt
from xaiopt.errors import ConfigError, StudyExistsError
from xaiopt.objective import get_benchmark
from xaiopt.objective.attrs import baseline, heatmap_artifact, spec_dict
from xaiopt.objective.explain import explainer_for
from xaiopt.objective.references import REFERENCES
from xaiopt.space import ExplainerSpec
from xaiopt.space.spec import GroupRule
from xaiopt.study import pareto_rows, per_sample_scores
from xaiopt.study.attribute import attribute_settings
from xaiopt.study.manage import REFERENCES_ATTR
from xaiopt.zoo import load_model

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FAST = {"runtime": {"heatmaps": 0}, "sampler": "random"}


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()


def _tensors(n: int = 6):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, 12, 12, generator=g)
    y = torch.arange(n) % 2
    masks = torch.zeros(n, 12, 12)
    masks[:, 3:9, 3:9] = 1
    return x, y, masks


# --- registered objects --------------------------------------------------------------------------

def test_eval_data_defaults_and_errors():
    x, y, masks = _tensors()
    data = xaiopt.eval_data(x, y, masks)
    assert data.masks.shape == (6, 1, 12, 12) and data.masks.dtype == torch.bool and int(data.masks.sum()) == 6 * 36
    torch.testing.assert_close(data.low, x.amin(dim=(0, 2, 3)))
    torch.testing.assert_close(data.high, x.amax(dim=(0, 2, 3)))
    assert data.num_classes == 2 and data.class_names == ("0", "1")
    with pytest.raises(ConfigError, match=r"y: expected a \(6,\) tensor"):
        xaiopt.eval_data(x, y[:3])
    with pytest.raises(ConfigError, match="y: expected integer class indices"):
        xaiopt.eval_data(x, y.float())
    with pytest.raises(ConfigError, match="masks: expected shape"):
        xaiopt.eval_data(x, y, masks[:, :5])
    with pytest.raises(ConfigError, match=r"class indices must be 0 to 0"):
        xaiopt.eval_data(x, y, num_classes=1)


def test_a_registered_model_is_a_copy_and_a_taken_name_is_refused():
    net = _net()
    ref = xaiopt.register_model("api_copy", net)
    assert xaiopt.register_model("api_copy", net) == ref  # the same object again: fine
    got = load_model(ref)
    assert got is not net
    x = torch.randn(2, 3, 12, 12)
    torch.testing.assert_close(got(x), net(x))
    with pytest.raises(ConfigError, match="'api_copy' is already registered for another object"):
        xaiopt.register_model("api_copy", _net())
    with pytest.raises(ConfigError, match="name 'no good' is invalid"):
        xaiopt.register_model("no good", net)


def test_an_unregistered_name_is_one_line_naming_the_plugin_route():
    with pytest.raises(ConfigError) as err:
        load_model("module:xaiopt.zoo.registered:api_never_registered")
    text = str(err.value)
    assert "\n" not in text and "not registered in this process" in text
    assert "xaiopt.register_model('api_never_registered', factory)" in text and "plugins:" in text
    with pytest.raises(ConfigError, match="dataset 'python:api_nothing' is not registered"):
        xaiopt.parse_config  # noqa: B018 (the loader is what raises)
        from xaiopt.zoo import load_dataset
        load_dataset("python:api_nothing", n=2)


def test_registered_dataset_takes_its_first_samples_and_refuses_more():
    from xaiopt.zoo import load_dataset

    x, y, masks = _tensors()
    name = xaiopt.register_dataset("api_data", xaiopt.eval_data(x, y, masks))
    assert name == "python:api_data"
    got = load_dataset(name, n=4)
    torch.testing.assert_close(got.x, x[:4])
    with pytest.raises(ConfigError, match="n_samples=7 exceeds the 6 samples"):
        load_dataset(name, n=7)
    with pytest.raises(ConfigError, match="data.split is invalid for the registered dataset"):
        load_dataset(name, n=2, split="train")


# --- building and running -------------------------------------------------------------------------

def test_study_config_from_objects_is_the_yaml_config(tmp_path):
    net = _net()
    x, y, masks = _tensors()
    cfg = xaiopt.study_config(name="api-objects", model=net, data=(x, y, masks), space={"layer_groups": 1},
                              metrics=["sparseness", {"name": "pointing_game"}], n_trials=3, **FAST)
    assert cfg.data.name == "python:api_objects" and cfg.data.n_samples == 6
    assert cfg.model.name.endswith("api_objects") and cfg.sampler.name == "random"
    # the same fields written as YAML give the same config
    path = tmp_path / "same.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    assert xaiopt.load_config(path) == cfg
    sections = xaiopt.study_config(name="api-sections", model={"name": "benchmark:vgg", "weights": "random"},
                                   data={"name": "benchmark", "split": "train"}, n_samples=8)
    assert sections.model.weights == "random" and sections.data.split == "train" and sections.data.n_samples == 8
    with pytest.raises(ConfigError, match="sampler"):
        xaiopt.study_config(name="api-bad", model="benchmark:vgg", sampler="annealing")
    with pytest.raises(ConfigError, match="data: expected a dataset name"):
        xaiopt.study_config(name="api-bad", data=[1, 2])


def test_run_study_from_objects_scores_the_given_tensors(tmp_path):
    net = _net()
    x, y, masks = _tensors()
    cfg = xaiopt.study_config(name="api-run", model=net, data=(x, y, masks), space={"layer_groups": 1},
                              metrics=["sparseness", "relevance_mass_accuracy"], n_trials=3, **FAST)
    storage = f"sqlite:///{tmp_path / 'run.db'}"
    loaded = xaiopt.run_study(cfg, storage=storage, device="cpu")
    done = [t for t in loaded.study.trials if t.values is not None]
    assert len(done) == 3
    # the stored scores are of these tensors: recomputed from the trial's attributions by hand
    t = done[0]
    got = attribute_settings(loaded, [spec_dict(t)], images=6, device="cpu")
    torch.testing.assert_close(got.images, x)
    pos = np.clip(got.attributions[0].numpy().reshape(6, -1).astype(np.float64), 0, None)
    want = (pos * masks.numpy().reshape(6, -1)).sum(1) / np.maximum(pos.sum(1), 1e-12)
    np.testing.assert_allclose(per_sample_scores(t)["relevance_mass_accuracy"], want, rtol=1e-5, atol=1e-6)
    with pytest.raises(StudyExistsError):
        xaiopt.run_study(cfg, storage=storage, device="cpu")
    again = xaiopt.run_study(cfg, storage=storage, device="cpu", resume=True)
    assert len(again.study.trials) == 3  # the budget was spent: nothing more runs


def test_run_study_from_a_yaml_file_and_a_dict(tmp_path):
    doc = {"name": "api-yaml", "n_trials": 2, "data": {"n_samples": 4}, "metrics": ["sparseness"],
           "space": {"layer_groups": 2}, **FAST}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc))
    storage = f"sqlite:///{tmp_path / 'y.db'}"
    loaded = xaiopt.run_study(path, storage=storage, device="cpu")
    assert loaded.config.model.name == "benchmark:vgg" and len(loaded.study.trials) == 2
    loaded2 = xaiopt.run_study({**doc, "name": "api-dict"}, storage=storage, device="cpu", n_trials=1)
    assert [t.number for t in loaded2.study.trials] == [0]
    with pytest.raises(ConfigError, match="n_trials"):
        xaiopt.run_study({**doc, "name": "api-none", "n_trials": None}, storage=storage, device="cpu")


# --- custom objectives ------------------------------------------------------------------------------

CALLS: list[int] = []


@xaiopt.register_objective("api_objective", values={"api_inside": "maximize", "api_total": "minimize"},
                           category={"api_inside": "localization", "api_total": "complexity"}, needs_masks=True)
def _objective(explain, ctx):
    CALLS.append(ctx.n)
    a = explain(ctx.x, ctx.y)  # the trial's explainer, called again: the same attributions as ctx's
    torch.testing.assert_close(a, ctx.attributions)
    pos = a.clamp(min=0).flatten(1)
    return {"api_inside": (pos * ctx.masks.flatten(1)).sum(1) / pos.sum(1).clamp(min=1e-12),
            "api_total": float(a.abs().sum())}


def test_a_custom_objective_runs_once_per_trial_with_its_directions(tmp_path):
    cfg = xaiopt.study_config(name="api-objective", data="benchmark", n_samples=4, n_trials=3,
                              metrics=["sparseness", _objective], space={"layer_groups": 2},
                              baselines=["epsilon_plus:canonized"], sampler="random", runtime={"heatmaps": 2})
    assert [m.name for m in cfg.metrics] == ["sparseness", "api_inside", "api_total"]
    CALLS.clear()
    loaded = xaiopt.run_study(cfg, storage=f"sqlite:///{tmp_path / 'o.db'}", device="cpu")
    study = loaded.study
    assert study.metric_names == ["sparseness", "api_inside", "api_total"]
    assert [d.name.lower() for d in study.directions] == ["maximize", "maximize", "minimize"]
    distinct = {str(spec_dict(t)) for t in study.trials}
    # once per computed trial, not per value, and once for each reference explanation the study scores
    assert len(CALLS) == len(distinct) + len(REFERENCES) and set(CALLS) == {4}
    refs = study.user_attrs[REFERENCES_ATTR]
    assert all(set(refs[r]["values"]) == {"sparseness", "api_inside", "api_total"} for r in REFERENCES)
    t = study.trials[0]
    got = attribute_settings(loaded, [spec_dict(t)], images=4, device="cpu")
    a = got.attributions[0].double()
    scores = per_sample_scores(t)
    # a scalar value is repeated for every sample; the per-sample one is each sample's own
    np.testing.assert_allclose(scores["api_total"], np.full(4, float(a.abs().sum())), rtol=1e-5)
    pos = a.clamp(min=0).flatten(1)
    want = ((pos * got.masks.flatten(1)).sum(1) / pos.sum(1).clamp(min=1e-12)).numpy()
    np.testing.assert_allclose(scores["api_inside"], want, rtol=1e-5, atol=1e-6)
    assert t.values[1] == pytest.approx(float(np.float32(want).astype(np.float64).mean()), rel=1e-6)
    rec = xaiopt.recommend(loaded)
    assert rec.best.number in {row["number"] for row in pareto_rows(loaded)}
    assert rec.metric_categories["api_inside"] == "localization"
    # the baseline was enqueued and scored by the objective; every trial uploaded its heatmaps
    assert baseline(study.trials[0]) == "epsilon_plus:canonized" and study.trials[0].values is not None
    assert all(heatmap_artifact(t) is not None for t in study.trials)
    assert all((loaded.artifact_dir / heatmap_artifact(t)).is_file() for t in study.trials)


def test_a_plugin_objective_runs_in_a_worker_process(tmp_path, monkeypatch):
    """A custom objective registered by a plugin module: an `xaiopt worker` subprocess that knows only the
    study's name computes it, and its stored values are the formula's on the trial's attributions."""
    (tmp_path / "api_plugin_objective.py").write_text(
        "import xaiopt\n"
        "@xaiopt.register_objective('api_plugin', values={'api_plugin_max': 'minimize'}, category='complexity')\n"
        "def objective(explain, ctx):\n"
        "    return {'api_plugin_max': explain(ctx.x, ctx.y).abs().flatten(1).amax(1)}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    doc = {"name": "api-plugin", "n_trials": 2, "plugins": ["api_plugin_objective"], "data": {"n_samples": 4},
           "metrics": ["sparseness", "api_plugin_max"], "space": {"layer_groups": 2}, "device": "cpu", **FAST}
    path = tmp_path / "plugin.yaml"
    path.write_text(yaml.safe_dump(doc))
    storage = f"sqlite:///{tmp_path / 'p.db'}"
    xaiopt.create_study(xaiopt.load_config(path), storage=storage)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "xaiopt", "worker", "--storage", storage, "--study", "api-plugin",
                           "--no-progress"], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = xaiopt.load_study("api-plugin", storage=storage)
    done = [t for t in loaded.study.trials if t.values is not None]
    assert len(done) == 2 and [d.name.lower() for d in loaded.study.directions] == ["maximize", "minimize"]
    for t in done:
        a = attribute_settings(loaded, [spec_dict(t)], images=4, device="cpu").attributions[0]
        want = a.abs().flatten(1).amax(1).numpy()
        np.testing.assert_allclose(per_sample_scores(t)["api_plugin_max"], want, rtol=1e-5)


def test_a_custom_objective_is_checked():
    with pytest.raises(ConfigError, match="direction 'up' of value 'v' is invalid"):
        xaiopt.register_objective("bad", values={"v": "up"})
    with pytest.raises(ConfigError, match="category of 'v' is missing or invalid"):
        xaiopt.register_objective("bad", values={"v": "maximize"}, category="beauty")
    with pytest.raises(ConfigError, match="values must name at least one value"):
        xaiopt.register_objective("bad", values={})


def test_an_objective_returning_the_wrong_values_says_which():
    objective = xaiopt.CustomObjective(name="o", values={"a": "maximize"}, categories={"a": "complexity"},
                                       func=lambda explain, ctx: {"b": 1.0})
    ctx = type("Ctx", (), {"n": 2, "device": torch.device("cpu"), "explain": None})()
    with pytest.raises(TypeError, match=r"returned \['b'\]; it declared \['a'\]"):
        objective(None, ctx)
    objective = xaiopt.CustomObjective(name="o", values={"a": "maximize"}, categories={"a": "complexity"},
                                       func=lambda explain, ctx: {"a": torch.ones(3)})
    with pytest.raises(TypeError, match=r"shape \(3,\); give a number or one value per sample, shape \(2,\)"):
        objective(None, ctx)


# --- results ----------------------------------------------------------------------------------------

def test_pareto_front_is_the_studys_front_and_its_composite_gives_its_attributions(tmp_path):
    cfg = xaiopt.study_config(name="api-front", data="benchmark", n_samples=4, n_trials=4,
                              metrics=["sparseness", "relevance_mass_accuracy"], space={"layer_groups": 2}, **FAST)
    loaded = xaiopt.run_study(cfg, storage=f"sqlite:///{tmp_path / 'f.db'}", device="cpu")
    front = xaiopt.pareto_front(loaded)
    rows = pareto_rows(loaded)
    assert [t.number for t in front] == [r["number"] for r in rows]
    assert [t.values for t in front] == [r["values"] for r in rows]
    assert [t.settings for t in front] == [r["explainer"] for r in rows]
    assert front[0].spec == ExplainerSpec.from_dict(rows[0]["explainer"])
    assert front[0].directions == {"sparseness": "maximize", "relevance_mass_accuracy": "maximize"}
    only = xaiopt.pareto_front(loaded, metrics=["sparseness"])
    assert len(only) == 1 and only[0].values["sparseness"] == max(t.values[0] for t in loaded.study.trials)
    # the export document gives the trial's attributions in plain zennit
    from zennit.attribution import Gradient

    model = load_model("benchmark:vgg").eval()
    bench = get_benchmark(loaded.config, torch.device("cpu"))
    x, y = bench.x, bench.y
    t = front[0]
    path = t.export(tmp_path / "t.json")
    for source in (t.composite(model), xaiopt.load_composite(path, model)):
        with Gradient(model, source) as attributor:
            _, rel = attributor(x, lambda out: torch.zeros_like(out).scatter_(1, y.view(-1, 1),
                                                                               out.gather(1, y.view(-1, 1))))
        want = attribute_settings(loaded, [t.settings], images=4, device="cpu").attributions[0]
        torch.testing.assert_close(rel.sum(1, keepdim=True), want, rtol=1e-4, atol=1e-6)
    with pytest.raises(ConfigError, match="must end in .json"):
        t.export(tmp_path / "t.py")


# --- the pruning example's channel relevance --------------------------------------------------------

def _example(name: str):
    module = sys.modules.get(f"example_{name}")
    if module is None:
        spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return module


def test_the_pruning_examples_channel_relevance_is_lrp_relevance_at_the_layer():
    """LRP-0 (epsilon -> 0 on every layer) of a ReLU network gives each layer's output the relevance
    activation x gradient of the explained logit: on the canonized benchmark VGG (batch norms merged), the
    recorded relevance equals that plain-autograd product, in float64, up to the stabiliser (1e-6) of the
    Norm rule on the average pool. Both LRP engines record the same relevance."""
    pruning = _example("pruning_objective")
    cfg = xaiopt.parse_config({"data": {"n_samples": 8}, "metrics": ["sparseness"], "space": {"canonize": [True]},
                               **FAST})
    bench = get_benchmark(cfg, torch.device("cpu"))
    twin = bench.twin.double()
    try:
        groups = {g: GroupRule("epsilon", 1e-9) for g in bench.twin_layers.groups}
        spec = ExplainerSpec(canonize=True, first_layer="same", groups=groups)
        x, y = bench.x.double(), bench.y
        engines = {}
        for engine in ("xaiopt", "zennit"):
            with explainer_for(spec, twin, bench.twin_layers, low=bench.low.double(), high=bench.high.double(),
                               batch_budget=3, engine=engine) as explain:
                engines[engine] = pruning.channel_relevance(explain, x, y)
                if engine == "zennit":  # the recheck's own reading: a tensor hook at the consumer's input
                    engines["hook"] = pruning.recorded_channel_relevance(explain, twin, x, y)
        got = engines["xaiopt"]
        for other in ("zennit", "hook"):
            torch.testing.assert_close(got, engines[other], rtol=1e-10, atol=1e-10 * float(got.abs().max()))
        acts = []
        handle = twin.get_submodule(pruning.LAYER).register_forward_hook(lambda m, i, out: acts.append(out))
        try:
            inp = x.clone().requires_grad_(True)
            logits = twin(inp)
            (grad,) = torch.autograd.grad(logits.gather(1, y.view(-1, 1)).sum(), acts[0])
        finally:
            handle.remove()
        want = (acts[0] * grad).detach().sum(dim=(0, 2, 3))
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5 * float(want.abs().max()))
        assert got.shape == (64,) and float(got.abs().sum()) > 0
    finally:
        twin.float()
