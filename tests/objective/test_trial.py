"""The worker's trial evaluation: benchmark cache, NaN trials failing with a reason, every sampler."""

from __future__ import annotations

from contextlib import contextmanager

import optuna
import pytest
import torch

from xaiopt.config import parse_config
from xaiopt.objective import Objective, get_benchmark
from xaiopt.objective import trial as trial_module
from xaiopt.study import create_study, optimize

CFG = {
    "name": "t",
    "device": "cpu",
    "data": {"n_samples": 4},
    "space": {"layer_groups": 2, "rules": ["zplus", "epsilon", "gamma"], "gamma": [0.25, 1.0],
              "epsilon": [1e-6, 0.1], "first_layer": ["zbox", "same"]},
    "metrics": ["sparseness", {"name": "region_perturbation", "params": {"patch_size": 16, "regions": 4}},
                "relevance_mass_accuracy"],
    "runtime": {"heatmaps": 0},
}


def test_benchmark_is_built_once_and_canonized_once():
    cfg = parse_config(CFG)
    a = get_benchmark(cfg, torch.device("cpu"))
    b = get_benchmark(cfg.model_copy(update={"sampler": parse_config({"sampler": "random"}).sampler}),
                      torch.device("cpu"))
    assert a is b
    assert a.twin is not None and a.twin is not a.model
    # the twin computes the same function as the model, and the logits are the model's
    with torch.no_grad():
        torch.testing.assert_close(a.twin(a.x), a.logits, rtol=1e-4, atol=1e-4)
    assert a.accuracy >= 0.75
    assert a.layers.groups.keys() == {"conv1", "conv2", "classifier"}
    assert a.twin_layers.groups == a.layers.groups


def test_metric_vector_of_a_fixed_spec_is_reproducible():
    from xaiopt.space import ExplainerSpec, GroupRule

    obj = Objective(parse_config(CFG), device=torch.device("cpu"))
    spec = ExplainerSpec(canonize=True, first_layer="zbox",
                         groups={"conv1": GroupRule("gamma", 0.25), "conv2": GroupRule("gamma", 0.25),
                                 "classifier": GroupRule("epsilon", 1e-6)})
    v1, s1, a1 = obj.evaluate(spec)
    v2, _, a2 = obj.evaluate(spec)
    assert v1 == v2
    torch.testing.assert_close(a1, a2)
    assert 0 <= v1["relevance_mass_accuracy"] <= 1 and 0 <= v1["sparseness"] <= 1
    assert set(s1) == {"attribution", "metric:sparseness", "metric:region_perturbation",
                       "metric:relevance_mass_accuracy"}
    # canonized and not: different explanations of the same function
    v3, _, a3 = obj.evaluate(ExplainerSpec(canonize=False, first_layer=spec.first_layer, groups=spec.groups))
    assert not torch.allclose(a1, a3)


def test_nan_trials_fail_with_a_reason_and_the_study_goes_on(tmp_path, monkeypatch):
    real = trial_module.explainer_for

    @contextmanager
    def poisoned(spec, *args, **kwargs):
        with real(spec, *args, **kwargs) as explain:
            if spec.first_layer == "zbox":
                yield lambda x, t: explain(x, t) * float("nan")
            else:
                yield explain

    monkeypatch.setattr(trial_module, "explainer_for", poisoned)
    storage = f"sqlite:///{tmp_path / 'nan.db'}"
    create_study(parse_config({**CFG, "sampler": "random"}), storage=storage)
    optimize("t", storage=storage, n_trials=8, device="cpu")
    study = optuna.load_study(study_name="t", storage=storage)
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(study.trials) == 8
    assert failed and complete
    for t in failed:
        assert t.params["first_layer"] == "zbox"
        assert t.user_attrs["fail_reason"] == "attributions are NaN/inf for 4 of 4 samples"
    assert all(t.params["first_layer"] == "same" for t in complete)


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "nsga3", "gp", "random", "grid", "qmc"])
def test_every_sampler_runs_the_study(tmp_path, sampler):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    cfg = {**CFG, "sampler": {"name": sampler}}
    if sampler == "tpe":
        cfg["sampler"]["params"] = {"n_startup_trials": 2}
    if sampler in ("nsga2", "nsga3"):
        cfg["sampler"]["params"] = {"population_size": 2}
    if sampler == "gp":
        cfg["sampler"]["params"] = {"n_startup_trials": 2}
    create_study(parse_config(cfg), storage=storage)
    optimize("t", storage=storage, n_trials=4, device="cpu")
    study = optuna.load_study(study_name="t", storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4
    assert all(len(t.values) == 3 for t in complete)
    if sampler == "grid":
        assert len({tuple(sorted(t.params.items())) for t in complete}) == 4


def test_sampler_params_are_checked(tmp_path):
    from xaiopt.errors import ConfigError

    cfg = parse_config({**CFG, "sampler": {"name": "nsga2", "params": {"populaton_size": 4}}})
    with pytest.raises(ConfigError, match="nsga2 takes no argument 'populaton_size' \\(valid: population_size"):
        create_study(cfg, storage=f"sqlite:///{tmp_path / 'x.db'}")
    assert not (tmp_path / "x.db").exists()


def test_a_point_proposed_again_reuses_the_finished_values(tmp_path):
    # one rule, one first layer, canonize fixed: the space has 4 points, so 8 trials repeat some
    cfg = {**CFG, "sampler": "random",
           "space": {"layer_groups": 1, "rules": ["gamma"], "gamma": [0.25, 1.0], "first_layer": ["zbox"],
                     "canonize": [True, False], "overrides": {"classifier": {"rules": ["epsilon"], "epsilon": [1e-6]}}}}
    storage = f"sqlite:///{tmp_path / 'dup.db'}"
    create_study(parse_config(cfg), storage=storage)
    optimize("t", storage=storage, n_trials=8, device="cpu")
    trials = optuna.load_study(study_name="t", storage=storage).trials
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    dups = [t for t in trials if "duplicate_of" in t.user_attrs]
    assert dups and len({t.user_attrs["explainer"] for t in trials}) == len(trials) - len(dups)
    for t in dups:
        first = trials[t.user_attrs["duplicate_of"]]
        assert "duplicate_of" not in first.user_attrs and first.number < t.number
        assert first.system_attrs["xaiopt:explainer"] == t.system_attrs["xaiopt:explainer"]
        assert first.values == t.values
    from xaiopt.study import load_study, pareto_rows

    listed = [r["number"] for r in pareto_rows(load_study("t", storage=storage))]
    assert listed and not set(listed) & {t.number for t in dups}
