"""The second recommendation method, rank aggregation (`--method rank`): standardized ranks, category
medians, a weighted median; and the agreement of the two methods. Hand-computed cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xaiopt.analysis import recommend
from xaiopt.analysis.recommend import method_agreement
from xaiopt.metrics.scoring import RankScorer, Scorer, kendall_tau_b, weighted_median
from xaiopt.cli import main

from .conftest import build_study, trial

METRICS = ["sparseness", "region_perturbation", "relevance_rank_accuracy"]  # three categories, all maximized
# Z1, Z2, Z3 (trials 0-2) trail; X (trial 3) is second on two metrics and best on the third; Y (trial 4)
# is best on two metrics and worst on the third
VALUES = {
    "Z1": (0.0, 0.0, 0.5),
    "Z2": (0.1, 0.1, 0.6),
    "Z3": (0.2, 0.2, 0.7),
    "X": (0.9, 0.9, 1.0),
    "Y": (1.0, 1.0, 0.0),
}
EQUAL = {"complexity": 1.0, "faithfulness": 1.0, "localization": 1.0}


def test_weighted_median_by_hand():
    assert weighted_median(np.array([3.0, 1.0, 2.0]), np.ones(3)) == 2.0
    assert weighted_median(np.array([4.0, 1.0, 3.0, 2.0]), np.ones(4)) == 2.5  # half the weight exactly: mean
    assert weighted_median(np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 3.0])) == 3.0
    assert weighted_median(np.array([1.0, 2.0, 9.0]), np.array([1.0, 1.0, 0.0])) == 1.5  # weight 0 left out
    rows = weighted_median(np.array([[1.0, 5.0, 2.0], [7.0, 7.0, 0.0]]), np.ones(3))
    assert rows.tolist() == [2.0, 7.0]


def test_standardized_ranks_by_hand_with_ties_and_a_minimized_metric():
    values = np.array([[1.0, 10.0], [2.0, 10.0], [3.0, 20.0], [100.0, 5.0]])
    scorer = RankScorer.fit(values, metrics=["a", "b"], directions=["maximize", "minimize"],
                            categories=["complexity", "faithfulness"], weights={"complexity": 1, "faithfulness": 1})
    # a: ranks 0, 1/3, 2/3, 1 whatever the gap to 100; b (minimized): 5 best, the two 10s share mid-rank 1.5 of 3
    np.testing.assert_allclose(scorer.normalize(values), [[0, 0.5], [1 / 3, 0.5], [2 / 3, 0], [1, 1]])
    # between two study values (a bootstrap mean) the rank is interpolated: 1.5 lies halfway between 1 and 2
    np.testing.assert_allclose(scorer.normalize(np.array([1.5, 15.0])), [1 / 6, 0.25])
    np.testing.assert_allclose(scorer.score(values), [0.25, 5 / 12, 1 / 3, 1.0])  # median of two = their mean


def test_one_disagreeing_metric_decides_the_mean_but_not_the_median(url):
    loaded = build_study(url, METRICS, [trial(values=dict(zip(METRICS, v)), label=k) for k, v in VALUES.items()])
    values = np.array(list(VALUES.values()))
    kw = dict(metrics=METRICS, directions=["maximize"] * 3,
              categories=["complexity", "faithfulness", "localization"], weights=EQUAL)
    # by hand: means of min-max X (0.9 + 0.9 + 1.0) / 3 = 0.933 > Y 0.667; medians of ranks Y 1.0 > X 0.75
    np.testing.assert_allclose(Scorer.fit(values, **kw).score(values), [0.5 / 3, 0.8 / 3, 1.1 / 3, 2.8 / 3, 2 / 3])
    np.testing.assert_allclose(RankScorer.fit(values, **kw).score(values), [0.0, 0.25, 0.5, 0.75, 1.0])
    by_score, by_rank = recommend(loaded), recommend(loaded, method="rank")
    assert by_score.best.number == 3 and by_rank.best.number == 4
    assert by_rank.method == "rank" and "standardized rank" in by_rank.rule and "weighted median" in by_rank.rule
    assert by_rank.best.score == pytest.approx(1.0)
    # the orderings X > Y > Z3 > Z2 > Z1 and Y > X > Z3 > Z2 > Z1 differ in one pair of ten: tau (9 - 1) / 10
    assert by_score.agreement == {
        "method": "rank", "recommended": 4, "rank_here": 2, "kendall_tau": pytest.approx(0.8), "top": 5,
        "top_shared": 5, "text": by_score.agreement["text"]}
    assert by_score.agreement["text"] == (
        "Second method: rank aggregation (standardized ranks, medians) would recommend trial 4 instead (rank 2 "
        "here); the two orderings of the 5 settings agree with Kendall's tau 0.80, and 5 of their top 5 are shared.")
    assert by_score.agreement["text"] in by_score.notes
    assert by_rank.agreement["recommended"] == 3 and by_rank.agreement["rank_here"] == 2
    text = " ".join(by_rank.text().split())
    assert "trial 4" in text and "the best median-rank score (1.000 of 1)" in text
    assert "flipped before ranking" not in text  # nothing is minimized here


def test_agreement_top_overlap_and_ties():
    values = np.array(list(VALUES.values()))
    scorer = Scorer.fit(values, metrics=METRICS, directions=["maximize"] * 3,
                        categories=["complexity", "faithfulness", "localization"], weights=EQUAL)
    two = method_agreement(values, scorer, [0, 1, 2, 3, 4], method="score", top=2)
    assert (two["top"], two["top_shared"]) == (2, 2)  # {X, Y} both ways
    one = method_agreement(values, scorer, [0, 1, 2, 3, 4], method="score", top=1)
    assert one["top_shared"] == 0
    assert method_agreement(values[:2], scorer, [0, 1], method="score") is None
    assert kendall_tau_b(np.array([1, 2, 3]), np.array([3, 2, 1])) == pytest.approx(-1.0)
    # tau-b: a tie in one vector is neither concordant nor discordant: (1 - 0) / sqrt(2 * 3)
    assert kendall_tau_b(np.array([1, 1, 2]), np.array([1, 2, 3])) == pytest.approx(2 / np.sqrt(6))


def test_the_paired_bootstrap_runs_on_the_rank_scale(url):
    rng = np.random.default_rng(3)
    noise = {m: rng.normal(0, 0.01, 32) for m in METRICS}
    per = {k: {m: np.full(32, v) + noise[m] for m, v in zip(METRICS, vals)} for k, vals in VALUES.items()}
    loaded = build_study(url, METRICS, [trial(per[k], label=k) for k in VALUES])
    rec = recommend(loaded, method="rank")
    assert rec.best.number == 4
    verdicts = {c.name: c.verdict for c in rec.comparisons}
    # Y vs X: medians 1.0 vs 0.75 whatever the noise of 0.01 on gaps of 0.1 and more
    assert verdicts["runner-up"] == "better"
    assert rec.comparisons[0].difference.score.difference == pytest.approx(0.25)


def test_command_line_method(url, capsys):
    build_study(url, METRICS, [trial(values=dict(zip(METRICS, v)), label=k) for k, v in VALUES.items()])
    assert main(["study", "recommend", "made", "--storage", url, "--method", "rank", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["method"] == "rank" and doc["top"][0]["number"] == 4 and doc["agreement"]["recommended"] == 3
    assert main(["study", "recommend", "made", "--storage", url, "--method", "median"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("xaiopt: error: argument --method: invalid choice: 'median'") and "\n" not in err
    with pytest.raises(Exception, match="not a recommendation method"):
        recommend("made", storage=url, method="median")
