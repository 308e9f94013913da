"""Normalization robust to a gross outlier (xaiopt/metrics/scoring.py): one setting far beyond the
others on a metric is cut at Tukey's far-out fences instead of setting the scale for everyone; fewer
than 8 settings, or a metric where most settings are equal, keep plain min-max. Hand-computed."""

from __future__ import annotations

import numpy as np
import pytest

from xaiopt.analysis import Scorer

SENS = [0.10, 0.12, 0.14, 0.15, 0.16, 0.18, 0.20, 0.22, 0.25, 3.27]  # one avg_sensitivity outlier


def _fit(column, direction="minimize", **kw):
    values = np.array(column, dtype=np.float64)[:, None]
    return Scorer.fit(values, metrics=["avg_sensitivity"], directions=[direction], categories=["robustness"],
                      weights={"robustness": 1.0}, **kw), values


def test_an_outlier_is_cut_at_the_fence_and_the_others_keep_the_scale():
    scorer, values = _fit(SENS)
    q1, q3 = np.percentile(SENS, [25, 75])
    fence = q3 + 3 * (q3 - q1)
    assert scorer.outliers == ["avg_sensitivity"]
    assert scorer.low[0] == pytest.approx(0.10) and scorer.high[0] == pytest.approx(fence)
    norm = scorer.normalize(values)[:, 0]
    # minimized: (high - v) / (high - low), the outlier clipped to 0
    expected = np.clip((fence - np.array(SENS)) / (fence - 0.10), 0, 1)
    np.testing.assert_allclose(norm, expected, rtol=1e-12)
    assert norm[-1] == 0.0 and norm[0] == 1.0
    # plain min-max squeezed the nine ordinary settings into the top 5% of the scale
    plain, _ = _fit(SENS, robust=False)
    assert plain.normalize(values)[:-1, 0].min() > 0.95
    assert norm[:-1].min() < 0.6


def test_few_settings_and_mostly_equal_metrics_keep_min_max():
    scorer, values = _fit(SENS[-5:])  # 5 settings: no quartiles worth the name
    assert scorer.outliers == [] and scorer.low[0] == SENS[-5] and scorer.high[0] == SENS[-1]
    mostly_equal = [0.5] * 9 + [0.9]  # the fences collapse onto 0.5: that is a signal, not an outlier
    scorer, values = _fit(mostly_equal, "maximize")
    assert scorer.outliers == [] and scorer.constant == []
    np.testing.assert_allclose(scorer.normalize(values)[:, 0], [0.0] * 9 + [1.0])
