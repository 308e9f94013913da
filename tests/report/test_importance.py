"""PED-ANOVA importance per metric on a constructed study whose answer is known: one parameter
decides each metric; a conditional parameter (gamma, only where the rule is gamma) is handled."""

from __future__ import annotations

import itertools
import warnings

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from xaiopt.config import config_to_dict, parse_config
from xaiopt.objective.attrs import SPEC_ATTR
from xaiopt.report import importance_figure, param_importances
from xaiopt.study.manage import CONFIG_ATTR, LoadedStudy


def _study(url: str) -> LoadedStudy:
    metrics = ["sparseness", "avg_sensitivity"]
    cfg = parse_config({"name": "imp", "metrics": metrics})
    study = optuna.create_study(storage=url, study_name="imp", directions=["maximize", "minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(metrics)
    study.set_user_attr(CONFIG_ATTR, config_to_dict(cfg))
    k = 0
    for first, rule, gamma, rep in itertools.product(["zbox", "flat"], ["gamma", "zplus"], [0.25, 1.0], range(2)):
        if rule == "zplus" and gamma == 1.0:
            continue  # gamma exists only under the gamma rule
        params = {"first_layer": first, "conv.rule": rule}
        dists = {"first_layer": CategoricalDistribution(["zbox", "flat"]),
                 "conv.rule": CategoricalDistribution(["gamma", "zplus"])}
        if rule == "gamma":
            params["conv.gamma"] = gamma
            dists["conv.gamma"] = CategoricalDistribution([0.25, 1.0])
        k += 1
        # first_layer decides sparseness, the rule decides sensitivity; the rest is a small trend
        values = [(0.9 if first == "zbox" else 0.1) + 0.001 * k, (1.0 if rule == "zplus" else 3.0) + 0.001 * k]
        spec = {"canonize": True, "first_layer": first, "groups": {"conv": {"rule": rule, "value": params.get(
            "conv.gamma")}}, "rep": rep}
        study.add_trial(create_trial(state=TrialState.COMPLETE, values=values, params=params, distributions=dists,
                                     user_attrs={"explainer": f"{first} {rule} {rep}"}, system_attrs={SPEC_ATTR: spec}))
    return LoadedStudy(study=study, config=cfg, storage_url=url)


def test_the_deciding_parameter_is_the_most_important(url):
    loaded = _study(url)
    imp = param_importances(loaded)
    assert imp.reason is None and imp.settings == 12
    assert set(imp.params) == {"first_layer", "conv.rule", "conv.gamma"}
    for m in ("sparseness", "avg_sensitivity"):
        assert sum(imp.values[m].values()) == pytest.approx(1.0)
    assert max(imp.values["sparseness"], key=imp.values["sparseness"].get) == "first_layer"
    assert max(imp.values["avg_sensitivity"], key=imp.values["avg_sensitivity"].get) == "conv.rule"
    assert param_importances(loaded).values == imp.values  # deterministic
    fig = importance_figure(loaded, importances=imp)
    assert fig.layout.meta["metrics"] == ["sparseness", "avg_sensitivity"]
    assert set(fig.layout.meta["params"]) == set(imp.params)
