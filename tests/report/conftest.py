"""Constructed studies with hand-set metric vectors, explainer specs, baselines, repeats and timings."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from xaiopt.config import config_to_dict, parse_config
from xaiopt.metrics import get_metric
from xaiopt.objective.attrs import SECONDS_ATTR, SPEC_ATTR
from xaiopt.study.manage import CONFIG_ATTR, LoadedStudy


def spec(canonize: bool, rule: str, first: str = "zbox") -> dict[str, Any]:
    return {"canonize": canonize, "first_layer": first,
            "groups": {"conv": {"rule": rule, "value": None}, "classifier": {"rule": "epsilon", "value": 1e-6}}}


def build(url: str, metrics: Sequence[str], rows: Sequence[dict[str, Any]], *, name: str = "made") -> LoadedStudy:
    """Each row: ``values`` (list, study order), optional ``spec``, ``baseline``, ``duplicate_of``, ``seconds``."""
    cfg = parse_config({"name": name, "metrics": list(metrics)})
    study = optuna.create_study(storage=url, study_name=name, directions=[get_metric(m).direction for m in metrics])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(metrics))
    study.set_user_attr(CONFIG_ATTR, config_to_dict(cfg))
    for k, r in enumerate(rows):
        s = r.get("spec") or spec(True, f"rule{k}")
        user = {"explainer": f"canonize={'yes' if s['canonize'] else 'no'} conv={s['groups']['conv']['rule']}"}
        for key in ("baseline", "duplicate_of"):
            if r.get(key) is not None:
                user[key] = r[key]
        system = {SPEC_ATTR: s}
        if r.get("seconds") is not None:
            system[SECONDS_ATTR] = r["seconds"]
        params = {"canonize": s["canonize"], "conv.rule": s["groups"]["conv"]["rule"]}
        rules = sorted({f"rule{i}" for i in range(len(rows))} | {"zplus", "gamma"})
        dists = {"canonize": CategoricalDistribution([True, False]), "conv.rule": CategoricalDistribution(rules)}
        study.add_trial(create_trial(state=TrialState.COMPLETE, values=r["values"], params=params,
                                     distributions=dists, user_attrs=user, system_attrs=system))
    return LoadedStudy(study=study, config=cfg, storage_url=url)


# one metric maximized, one minimized; the answers below are worked out by hand in the tests
DIRECTIONS = ["sparseness", "avg_sensitivity"]
ROWS = [
    dict(values=[0.2, 3.0], spec=spec(True, "gamma"), baseline="b:canonized",
         seconds={"attribution": 0.5, "metric:sparseness": 0.1, "metric:avg_sensitivity": 1.0, "total": 2.0}),
    dict(values=[0.8, 1.0], spec=spec(True, "zplus", "flat"),
         seconds={"attribution": 0.3, "metric:sparseness": 0.2, "metric:avg_sensitivity": 2.0, "total": 2.6}),
    dict(values=[0.5, 2.0], spec=spec(False, "gamma"), baseline="b:plain",
         seconds={"attribution": 0.7, "metric:sparseness": 0.1, "metric:avg_sensitivity": 1.5, "total": 2.4}),
    dict(values=[0.8, 1.0], spec=spec(True, "zplus", "flat"), duplicate_of=1, seconds={"total": 0.01}),
    dict(values=[1.0, 4.0], spec=spec(True, "rule4", "same"),
         seconds={"attribution": 0.4, "metric:sparseness": 0.3, "metric:avg_sensitivity": 0.5, "total": 1.5}),
]


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'made.db'}"


@pytest.fixture
def two_way(url: str) -> LoadedStudy:
    """sparseness ↑ and avg_sensitivity ↓: trial 1 dominates 0 and 2, trial 3 repeats 1, the front is {1, 4}."""
    return build(url, DIRECTIONS, ROWS)
