"""The per-metric sanity check against reference explanations and the leave-one-out statement, on
constructed studies whose answers are computed by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xaiopt.analysis import recommend
from xaiopt.analysis.sanity import sanity_check
from xaiopt.cli import main
from xaiopt.metrics.packing import pack_scores
from xaiopt.study.manage import REFERENCES_ATTR

from .conftest import build_study, trial

N = 32
NOISE = np.random.default_rng(11).normal(0.0, 0.05, size=N)
# sparseness cannot tell noise from the settings; relevance_rank_accuracy separates them;
# avg_sensitivity (minimized) scores noise better than any setting
METRICS = ["sparseness", "relevance_rank_accuracy", "avg_sensitivity"]


def scores(sparseness: float, rra: float, sens: float) -> dict[str, np.ndarray]:
    return {"sparseness": sparseness + NOISE, "relevance_rank_accuracy": rra + NOISE * 0.1,
            "avg_sensitivity": sens + NOISE * 0.1}


def with_references(loaded, refs: dict[str, dict[str, np.ndarray]]):
    loaded.study.set_user_attr(REFERENCES_ATTR, {
        name: {"values": {m: float(np.asarray(v, dtype=np.float32).astype(np.float64).mean()) for m, v in s.items()},
               "scores": pack_scores({m: np.asarray(v, dtype=np.float32) for m, v in s.items()})}
        for name, s in refs.items()})
    return loaded


@pytest.fixture
def study(url):
    loaded = build_study(url, METRICS, [
        trial(scores(0.60, 0.80, 0.30), label="A"),
        trial(scores(0.55, 0.60, 0.40), label="B"),
        trial(scores(0.50, 0.40, 0.50), label="C"),
    ])
    return with_references(loaded, {
        "random": scores(0.60, 0.20, 0.10),   # as sparse as A (the same noise), far worse localized, least sensitive
        "sobel": scores(0.52, 0.50, 0.20),
    })


def test_a_metric_that_scores_noise_as_well_is_flagged_and_one_that_separates_is_not(study):
    rec = recommend(study)
    assert rec.best.number == 0
    check = {m["metric"]: m for m in rec.sanity["metrics"]}
    # sparseness: A minus random is 0 on every sample: the interval is [0, 0], not above 0
    assert check["sparseness"]["flagged"] and check["sparseness"]["difference"] == pytest.approx(0.0, abs=1e-6)
    assert "FLAGGED: cannot tell the random reference from the recommended setting" in check["sparseness"]["line"]
    # relevance_rank_accuracy: 0.8 against 0.2 on every sample
    assert not check["relevance_rank_accuracy"]["flagged"]
    assert check["relevance_rank_accuracy"]["difference"] == pytest.approx(0.6, abs=1e-6)
    assert check["relevance_rank_accuracy"]["low"] == pytest.approx(0.6, abs=1e-6)
    assert "ranks random below the recommended setting" in check["relevance_rank_accuracy"]["line"]
    assert "and below 3 of 3 settings" in check["relevance_rank_accuracy"]["line"]
    # avg_sensitivity is minimized: random 0.1 against A's 0.3 is better, distinguishably
    assert check["avg_sensitivity"]["flagged"] and check["avg_sensitivity"]["difference"] == pytest.approx(-0.2, abs=1e-6)
    assert "scores the random reference better than the recommended setting" in check["avg_sensitivity"]["line"]
    # places among the 3 settings and itself: 1 + settings strictly better
    assert check["relevance_rank_accuracy"]["places"] == {"random": 4, "sobel": 3}
    assert check["sparseness"]["places"] == {"random": 1, "sobel": 3}  # ties with A: nobody strictly better
    assert check["avg_sensitivity"]["places"] == {"random": 1, "sobel": 1}
    assert rec.sanity["references"] == ["random", "sobel"]
    flagged_line = next(line for line in rec.sanity["lines"] if line.startswith("Flagged"))
    assert flagged_line.startswith("Flagged (2 of 3): sparseness, avg_sensitivity — they score noise")
    text = " ".join(rec.text().split())
    assert "sparseness: FLAGGED" in text and "Flagged (2 of 3)" in text


VALUES = {  # all maximized, one category each; by hand the mean of min-max picks X (trial 3)
    "Z1": (0.0, 0.0, 0.5),
    "Z2": (0.1, 0.1, 0.6),
    "Z3": (0.2, 0.2, 0.7),
    "X": (0.9, 0.9, 1.0),
    "Y": (1.0, 1.0, 0.0),
}
LOO_METRICS = ["sparseness", "region_perturbation", "relevance_rank_accuracy"]


def test_leave_one_out_by_hand(url):
    loaded = build_study(url, LOO_METRICS, [trial(values=dict(zip(LOO_METRICS, v)), label=k)
                                            for k, v in VALUES.items()])
    rec = recommend(loaded)
    assert rec.best.number == 3
    # without relevance_rank_accuracy: Y (1 + 1) / 2 = 1.0 beats X 0.9; without either of the others X keeps
    # (0.9 + 1.0) / 2 = 0.95 against Y's (1 + 0) / 2 = 0.5
    assert rec.sanity["leave_one_out"] == {"sparseness": 3, "region_perturbation": 3, "relevance_rank_accuracy": 4}
    assert rec.sanity["decisive"] == ["relevance_rank_accuracy"]
    assert rec.sanity["lines"] == [
        "Reference explanations not scored yet (the worker that completes the budget scores them once): no per-metric sanity check.",
        "Decided by: relevance_rank_accuracy (leaving it out changes the choice: without relevance_rank_accuracy, "
        "trial 4); the choice survives leaving out sparseness, region_perturbation."]
    assert rec.sanity["metrics"] == []  # no reference scored: no per-metric lines
    # with the rank method the medians pick Y; with two metrics left the median is their mean: without
    # sparseness (or region_perturbation) X has (0.75 + 1.0) / 2 = 0.875 against Y's (1 + 0) / 2 = 0.5
    by_rank = recommend(loaded, method="rank")
    assert by_rank.best.number == 4
    assert by_rank.sanity["leave_one_out"] == {"sparseness": 3, "region_perturbation": 3,
                                               "relevance_rank_accuracy": 4}
    assert by_rank.sanity["lines"][1:] == [
        "Decided by: sparseness, region_perturbation (leaving one out changes the choice: without sparseness, "
        "trial 3; without region_perturbation, trial 3); the choice survives leaving out relevance_rank_accuracy."]


def test_no_sanity_check_without_settings_and_cli_json(study, capsys):
    assert main(["study", "recommend", "made", "--storage", study.storage_url, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [m["metric"] for m in doc["sanity"]["metrics"] if m["flagged"]] == ["sparseness", "avg_sensitivity"]
    check = sanity_check(study, recommend(study), resamples=200, seed=1)
    assert check is not None and check.flagged == ["sparseness", "avg_sensitivity"]


def test_a_dominating_setting_survives_leaving_out_any_metric(url):
    rows = {"A": (0.9, 0.9, 0.9), "B": (0.5, 0.1, 0.2), "C": (0.1, 0.5, 0.3)}
    loaded = build_study(url, LOO_METRICS, [trial(values=dict(zip(LOO_METRICS, v)), label=k) for k, v in rows.items()],
                         name="dominated")
    rec = recommend(loaded)
    assert rec.best.number == 0 and rec.sanity["decisive"] == []
    assert rec.sanity["lines"][1:] == ["No single metric decides the choice: trial 0 stays recommended when any one of "
                                   "the 3 metrics is left out."]
