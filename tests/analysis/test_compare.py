"""Per-class settings against the all-class one on constructed studies: where is per-class worth it?"""

from __future__ import annotations

import numpy as np
import pytest

from xaiopt.analysis.compare import compare_per_class
from xaiopt.errors import StudyError
from xaiopt.study.per_class import CLASS_ATTR, PER_CLASS_ATTR

from .conftest import build_study, trial

METRICS = ["sparseness", "relevance_mass_accuracy"]


def _settings(rng, quality, n=30):
    return [trial({m: 0.5 + q + rng.normal(0, 0.05, n) for m in METRICS}, label=f"s-{k}")
            for k, q in enumerate(quality)]


def test_per_class_is_better_only_where_the_held_out_samples_say_so(url):
    rng = np.random.default_rng(0)
    base = build_study(url, METRICS, _settings(rng, [0.0, 0.2, 0.1]), name="all")  # all-class winner: s-1
    # class a: its own winner is s-2, which is truly better on class a; class b: its winner is s-0,
    # no better than s-1 on class b's held-out samples; class c: the same setting as the all-class one
    truth = {"a": {0: 0.0, 1: 0.1, 2: 0.4}, "b": {0: 0.2, 1: 0.2, 2: 0.0}, "c": {0: 0.0, 1: 0.3, 2: 0.1}}
    search = {"a": [0.0, 0.1, 0.4], "b": [0.25, 0.2, 0.0], "c": [0.0, 0.3, 0.1]}
    for cls, q in search.items():
        loaded = build_study(url, METRICS, _settings(rng, q), name=f"all.{cls}")
        loaded.study.set_user_attr(PER_CLASS_ATTR, "all")
        loaded.study.set_user_attr(CLASS_ATTR, cls)
    held_noise = {cls: {m: rng.normal(0, 0.05, 20) for m in METRICS} for cls in truth}

    def evaluator_for(loaded):
        cls = loaded.study.user_attrs[CLASS_ATTR]

        def evaluate(spec):
            k = int(spec["label"].split("-")[1])
            return {m: 0.5 + truth[cls][k] + held_noise[cls][m] + rng.normal(0, 0.02, 20) for m in METRICS}
        return evaluate

    result = compare_per_class(base, evaluator_for=evaluator_for, resamples=500)
    rows = {r.cls: r for r in result.rows}
    assert result.all_class_trial == 1
    assert rows["a"].per_class_trial == 2 and rows["a"].verdict == "per-class better"
    assert rows["b"].per_class_trial == 0 and rows["b"].verdict == "indistinguishable"
    assert rows["c"].same_setting and rows["c"].verdict == "same setting"
    assert result.summary.startswith("A per-class setting is distinguishably better") and "of 3 classes: a;" in \
        result.summary
    assert "per-class better" in result.text()
    stored = base.study.user_attrs["xaiopt:per_class_comparison"]
    assert [r["verdict"] for r in stored["rows"]] == ["per-class better", "indistinguishable", "same setting"]


def test_no_per_class_studies_is_one_line(url):
    rng = np.random.default_rng(1)
    base = build_study(url, METRICS, _settings(rng, [0.0, 0.1]), name="lonely")
    with pytest.raises(StudyError, match="no per-class studies"):
        compare_per_class(base)
