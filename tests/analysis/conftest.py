"""Constructed studies: hand-set metric vectors and per-sample scores in a tmp SQLite storage."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState, create_trial

from xaiopt.config import config_to_dict, parse_config
from xaiopt.metrics import get_metric
from xaiopt.metrics.packing import pack_scores
from xaiopt.objective.trial import PER_SAMPLE_ATTR
from xaiopt.study.manage import CONFIG_ATTR, LoadedStudy


def trial(per_sample: dict[str, Sequence[float]] | None = None, *, values: dict[str, float] | None = None,
          label: str | None = None, store: bool = True, state: TrialState = TrialState.COMPLETE,
          **user_attrs: Any) -> dict[str, Any]:
    """A trial to add: values are the per-sample means unless given; ``label`` names its explainer."""
    if values is None and per_sample is not None:
        values = {m: float(np.asarray(v, dtype=np.float32).astype(np.float64).mean()) for m, v in per_sample.items()}
    return {"per_sample": per_sample if store else None, "values": values, "label": label, "state": state,
            "user_attrs": user_attrs}


def build_study(url: str, metrics: Sequence[str], trials: Sequence[dict[str, Any]], *,
                name: str = "made", config: dict[str, Any] | None = None) -> LoadedStudy:
    """An xaiopt study (config user attr, metric names, directions from the registry) with these trials;
    ``config``: more sections of its config (e.g. ``decision``)."""
    cfg = parse_config({"name": name, "metrics": list(metrics), **(config or {})})
    directions = [get_metric(m).direction for m in metrics]
    study = optuna.create_study(storage=url, study_name=name, directions=directions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(metrics))
    study.set_user_attr(CONFIG_ATTR, config_to_dict(cfg))
    for k, t in enumerate(trials):
        attrs = dict(t["user_attrs"])
        label = t["label"] or f"setting-{k}"
        attrs.setdefault("explainer", {"label": label})
        attrs.setdefault("explainer_text", label)
        system = {} if t["per_sample"] is None else {PER_SAMPLE_ATTR: pack_scores(
            {m: np.asarray(v, dtype=np.float32) for m, v in t["per_sample"].items()})}
        complete = t["state"] == TrialState.COMPLETE
        study.add_trial(create_trial(state=t["state"], values=[t["values"][m] for m in metrics] if complete else None,
                                     params={}, distributions={}, user_attrs=attrs, system_attrs=system))
    return LoadedStudy(study=study, config=cfg, storage_url=url)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'made.db'}"
