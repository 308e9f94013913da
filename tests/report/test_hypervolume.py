"""Exact hypervolume: hand-computed 2-D and 3-D cases, Optuna's WFG on random points, the study's history."""

from __future__ import annotations

import numpy as np
import pytest
from optuna._hypervolume import compute_hypervolume

from xaiopt.analysis.hypervolume import hypervolume, hypervolume_history
from xaiopt.errors import ConfigError


def test_two_objectives_by_hand():
    # two boxes 2x1 and 1x2 overlapping in 1x1
    assert hypervolume([[1.0, 2.0], [2.0, 1.0]], [3.0, 3.0]) == pytest.approx(3.0, abs=1e-12)
    # a dominated point, a repeated point and one beyond the reference change nothing
    assert hypervolume([[1.0, 2.0], [2.0, 1.0], [2.5, 2.5], [1.0, 2.0], [4.0, 0.0]], [3.0, 3.0]) == \
        pytest.approx(3.0, abs=1e-12)
    # one maximized and one minimized objective: the box from (0, 1) to (0.9, 0.2)
    assert hypervolume([[0.9, 0.2]], [0.0, 1.0], directions=["maximize", "minimize"]) == pytest.approx(0.72)
    assert hypervolume(np.empty((0, 2)), [1.0, 1.0]) == 0.0


def test_three_objectives_by_hand():
    # boxes 2*2*1 = 4 and 1*1*2 = 2, their intersection from (2, 2, 2) to (3, 3, 3) = 1
    pts = [[1.0, 1.0, 2.0], [2.0, 2.0, 1.0]]
    assert hypervolume(pts, [3.0, 3.0, 3.0]) == pytest.approx(5.0, abs=1e-12)
    assert hypervolume(pts + [[2.0, 2.0, 2.5]], [3.0, 3.0, 3.0]) == pytest.approx(5.0, abs=1e-12)
    # a third point adds the unit cube (0..1, 2..3, 0..1) minus nothing shared: corner (0, 2, 0)
    assert hypervolume(pts + [[0.0, 2.0, 0.0]], [3.0, 3.0, 3.0]) == pytest.approx(5.0 + 3 * 1 * 3 - (
        # shared with the first box: x 1..3, y 2..3, z 2..3 -> 2; with the second: x 2..3, y 2..3, z 1..3 -> 2;
        # with both: x 2..3, y 2..3, z 2..3 -> 1
        2.0 + 2.0 - 1.0), abs=1e-12)


@pytest.mark.parametrize("m", [2, 3, 4, 5, 6])
def test_equals_optunas_exact_hypervolume_on_random_points(m):
    rng = np.random.default_rng(m)
    for n in (1, 2, 7, 25):
        pts = rng.random((n, m))
        pts = np.vstack([pts, pts[:1]])  # a repeat
        ref = np.full(m, 1.05)
        assert hypervolume(pts, ref) == pytest.approx(compute_hypervolume(pts, ref), rel=1e-12, abs=1e-15)
        # the same points maximized (negated) give the same volume
        assert hypervolume(-pts, -ref, directions=["maximize"] * m) == pytest.approx(
            compute_hypervolume(pts, ref), rel=1e-12, abs=1e-15)
    # points on a sphere: all mutually non-dominated, the hard case
    x = np.abs(rng.normal(size=(20, m)))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    assert hypervolume(x, np.full(m, 1.1)) == pytest.approx(compute_hypervolume(x, np.full(m, 1.1)), rel=1e-12)


def test_bad_input_is_one_line():
    with pytest.raises(ConfigError, match="directions"):
        hypervolume([[1.0, 2.0]], [3.0, 3.0], directions=["up", "down"])
    with pytest.raises(ConfigError, match="shape"):
        hypervolume([[1.0, 2.0, 3.0]], [3.0, 3.0])


def test_history_respects_each_metrics_direction(two_way):
    # sparseness (max) spans 0.2..1.0, avg_sensitivity (min) 1..4; normalized (1 = best):
    # t0 (0, 1/3), t1 (0.75, 1), t2 (0.375, 2/3) dominated by t1, t3 repeats t1, t4 (1, 0).
    # Reference at -0.1: shifted boxes t0 0.1 x 0.4333, t1 0.85 x 1.1, t4 adds (1.1 - 0.85) x 0.1
    hist = hypervolume_history(two_way)
    box = 1.1 ** 2
    t0 = 0.1 * (0.1 + 1 / 3)
    t1 = 0.85 * 1.1
    expected = [t0, t1, t1, t1, t1 + 0.25 * 0.1]
    assert hist.trials == [0, 1, 2, 3, 4]
    assert hist.values == pytest.approx([v / box for v in expected], rel=1e-12)
    assert hist.reference == pytest.approx({"sparseness": 0.2 - 0.08, "avg_sensitivity": 4.0 + 0.3})
    assert hist.settings == 4 and hist.left_out == []
    # the same points through hypervolume() in the metrics' own units
    pts = np.array([[0.2, 3.0], [0.8, 1.0], [0.5, 2.0], [1.0, 4.0]])
    raw = hypervolume(pts, [0.12, 4.3], directions=["maximize", "minimize"])
    assert raw / (0.88 * 3.3) == pytest.approx(hist.values[-1], rel=1e-12)
