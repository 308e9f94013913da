"""The decision regret of benchmarks/search_efficiency.py on small hand-computed grids (no model)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _benchmark():
    path = ROOT / "benchmarks" / "search_efficiency.py"
    spec = importlib.util.spec_from_file_location("search_efficiency_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


decision_regret = _benchmark().decision_regret

# 4 settings x 2 maximized metrics, one metric per category.
#   grid min-max: m0 in [0, 10], m1 in [0, 10]
#   equal weights, grid scores (mean of the two normalized values):
#     S0 = (0, 10):  (0.0 + 1.0) / 2 = 0.50
#     S1 = (10, 0):  (1.0 + 0.0) / 2 = 0.50
#     S2 = (8, 4):   (0.8 + 0.4) / 2 = 0.60
#     S3 = (5, 8):   (0.5 + 0.8) / 2 = 0.65   <- the grid's best
VALUES = np.array([[0.0, 10.0], [10.0, 0.0], [8.0, 4.0], [5.0, 8.0]])
KW = {"directions": ["maximize", "maximize"], "categories": ["faithfulness", "localization"],
      "metrics": ["region_perturbation", "relevance_rank_accuracy"]}
EQUAL = {"faithfulness": 1.0, "localization": 1.0}


def test_own_normalization_picks_another_setting_than_the_grids_best():
    # found S2, S3, S1: own ranges m0 in [5, 10], m1 in [0, 8]
    #   S2: ((8-5)/5 + 4/8) / 2 = (0.6 + 0.5) / 2 = 0.55   <- recommended
    #   S3: (0.0 + 1.0) / 2 = 0.50
    #   S1: (1.0 + 0.0) / 2 = 0.50
    # the grid's best S3 was found, yet the study recommends S2: regret 0.65 - 0.60 = 0.05
    r = decision_regret(VALUES, [2, 3, 1], weights=EQUAL, **KW)
    assert (r["best"], r["chosen"]) == (3, 2)
    assert r["regret"] == pytest.approx(0.05)
    assert r["best_score"] == pytest.approx(0.65) and r["chosen_score"] == pytest.approx(0.60)
    assert r["indistinguishable"] is None  # no per-sample scores to compare


def test_ties_go_to_the_earliest_found_and_repeats_are_ignored():
    # found S3, S1: own ranges m0 in [5, 10], m1 in [0, 8]: S3 = (0 + 1) / 2 = 0.5, S1 = (1 + 0) / 2 = 0.5
    r = decision_regret(VALUES, [3, 1, 3], weights=EQUAL, **KW)
    assert r["chosen"] == 3 and r["regret"] == 0.0 and r["indistinguishable"] is True
    # the other order: S1 is recommended, regret 0.65 - 0.50 = 0.15
    r = decision_regret(VALUES, [1, 3, 1], weights=EQUAL, **KW)
    assert r["chosen"] == 1 and r["regret"] == pytest.approx(0.15)


def test_zero_when_the_whole_grid_is_found():
    r = decision_regret(VALUES, [0, 1, 2, 3], weights=EQUAL, **KW)
    assert r["chosen"] == r["best"] == 3 and r["regret"] == 0.0 and r["indistinguishable"] is True


def test_weights_change_the_grids_best_and_the_regret():
    # faithfulness=3: score = (3 * n0 + n1) / 4 on the grid
    #   S0: (0 + 1) / 4 = 0.25, S1: (3 + 0) / 4 = 0.75 (best), S2: (2.4 + 0.4) / 4 = 0.70, S3: (1.5 + 0.8) / 4 = 0.575
    # found S2, S3: own ranges m0 in [5, 8], m1 in [4, 8]: S2 = (3 * 1 + 0) / 4 = 0.75, S3 = (0 + 1) / 4 = 0.25
    # -> S2, regret 0.75 - 0.70 = 0.05
    r = decision_regret(VALUES, [2, 3], weights={"faithfulness": 3.0, "localization": 1.0}, **KW)
    assert (r["best"], r["chosen"]) == (1, 2)
    assert r["regret"] == pytest.approx(0.05)


def test_a_minimized_metric_is_flipped():
    # m1 minimized: grid normalized m1 = 1 - m1/10; S0: (0 + 0) / 2 = 0, S1: (1 + 1) / 2 = 1 (best)
    r = decision_regret(VALUES, [0, 2], weights=EQUAL, **dict(KW, directions=["maximize", "minimize"]))
    # found S0, S2: own m0 in [0, 8], m1 in [4, 10]: S0 = (0 + 0) / 2 = 0, S2 = (1 + 1) / 2 = 1 -> S2
    # grid score of S2: (0.8 + 0.6) / 2 = 0.70; regret 1.0 - 0.7 = 0.3
    assert (r["best"], r["chosen"]) == (1, 2)
    assert r["regret"] == pytest.approx(0.3)


def _per_sample(noise: float, n: int = 20) -> np.ndarray:
    """(4, 2, n) per-sample scores whose means are VALUES: +-noise alternating around each value."""
    signs = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    return VALUES[:, :, None] + noise * signs[None, None, :]


def test_bootstrap_identical_per_sample_scores_are_indistinguishable():
    ps = _per_sample(0.5)
    ps[2] = ps[3]  # the recommended S2 scored exactly as the grid's best S3 on every sample
    r = decision_regret(VALUES, [2, 3, 1], weights=EQUAL, per_sample=ps, **KW)
    assert r["chosen"] == 2 and r["regret"] == pytest.approx(0.05)
    assert r["indistinguishable"] is True


def test_bootstrap_a_consistent_gap_is_distinguishable():
    # S3 beats S2 by 0.05 on the grid's scale on every sample, noise 0.01 on a range of 10: no overlap
    r = decision_regret(VALUES, [2, 3, 1], weights=EQUAL, per_sample=_per_sample(0.01), **KW)
    assert r["chosen"] == 2 and r["indistinguishable"] is False


def test_no_setting_found_is_an_error():
    with pytest.raises(ValueError):
        decision_regret(VALUES, [], weights=EQUAL, **KW)
