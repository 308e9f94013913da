"""One score per setting: metrics normalized by direction, averaged per category, categories weighted.

The same :class:`Scorer` ranks the study's settings and scores every bootstrap resample, so the
confidence statement is about exactly the rule that chose.

Example::

    scorer = Scorer.fit(values, metrics=["sparseness", "avg_sensitivity"],
                        directions=["maximize", "minimize"], categories=["complexity", "robustness"],
                        weights={"complexity": 1.0, "robustness": 2.0})
    scorer.normalize(values)        # (T, M) in [0, 1], 1 = the study's best on that metric
    scorer.score(values)            # (T,) weighted mean of the category means
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from xaiopt.metrics.categories import CATEGORIES

# float32 scores carry about 7 significant digits: a study range below this share of the
# metric's magnitude is rounding noise (a canonized and a plain twin computing the same function)
CONSTANT_RTOL = 1e-6
# gross outliers: beyond Tukey's far-out fences (quartiles -/+ 3 interquartile ranges), looked for
# once the study has this many distinct settings (fewer have no quartiles worth the name)
OUTLIER_IQR = 3.0
OUTLIER_MIN_SETTINGS = 8


@dataclass(frozen=True)
class Scorer:
    """Min-max normalization fixed on the study's settings (robust to gross outliers), category means,
    category weights.

    With ``robust`` (the default) and at least :data:`OUTLIER_MIN_SETTINGS` settings, a metric's range
    stops at Tukey's far-out fences (first quartile - 3 IQR, third quartile + 3 IQR) when a setting
    lies beyond them: that setting is normalized to 0 or 1 (clipped) instead of squeezing every other
    setting into a sliver of the scale. One avg_sensitivity of 3.27 among values near 0.1 no longer
    decides the robustness category alone. ``outliers`` names, per metric, whether it was clipped."""

    metrics: tuple[str, ...]
    directions: tuple[str, ...]
    metric_categories: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray
    weights: Mapping[str, float]
    clipped: np.ndarray | None = None

    @classmethod
    def fit(cls, values: np.ndarray, *, metrics: Sequence[str], directions: Sequence[str],
            categories: Sequence[str], weights: Mapping[str, float], robust: bool = True,
            also: Sequence[Sequence[float]] = ()) -> "Scorer":
        """Normalize over ``values`` ((T, M), one row per setting, metrics in study order) and ``also``: more
        settings of the range that are not ranked (a racing study's pruned ones at their stage means,
        :func:`xaiopt.objective.attrs.explored_means`)."""
        values = np.asarray(values, dtype=np.float64)
        if len(also):
            values = np.vstack([values, np.asarray(also, dtype=np.float64).reshape(-1, values.shape[1])])
        low, high = values.min(axis=0), values.max(axis=0)
        clipped = np.zeros(values.shape[1], dtype=bool)
        if robust and len(values) >= OUTLIER_MIN_SETTINGS:
            q1, q3 = np.percentile(values, [25, 75], axis=0)
            fence_low = np.maximum(low, q1 - OUTLIER_IQR * (q3 - q1))
            fence_high = np.minimum(high, q3 + OUTLIER_IQR * (q3 - q1))
            scale = np.maximum(np.abs(low), np.abs(high))
            # never collapse a metric to a constant: most settings equal and one apart is a signal
            wide = (fence_high - fence_low) > CONSTANT_RTOL * scale
            clipped = wide & ((fence_low > low) | (fence_high < high))
            low, high = np.where(clipped, fence_low, low), np.where(clipped, fence_high, high)
        return cls(metrics=tuple(metrics), directions=tuple(directions), metric_categories=tuple(categories),
                   low=low, high=high, weights=dict(weights), clipped=clipped)

    @property
    def outliers(self) -> list[str]:
        """Metrics whose range was cut at the outlier fences (their outlying settings score 0 or 1)."""
        if self.clipped is None:
            return []
        return [m for m, c in zip(self.metrics, self.clipped) if c]

    @property
    def categories(self) -> list[str]:
        """The categories of the study's metrics, in the registry's order."""
        present = set(self.metric_categories)
        return [c for c in CATEGORIES if c in present]

    @property
    def constant_mask(self) -> np.ndarray:
        scale = np.maximum(np.abs(self.low), np.abs(self.high))
        return (self.high - self.low) <= CONSTANT_RTOL * scale

    @property
    def constant(self) -> list[str]:
        """Metrics equal (to float32 resolution) on every setting: they rank nothing, normalized to 0.5."""
        return [m for m, c in zip(self.metrics, self.constant_mask) if c]

    def normalize(self, means: np.ndarray) -> np.ndarray:
        """(..., M) metric means -> (..., M), 1 = best of the study, 0 = worst, direction respected."""
        means = np.asarray(means, dtype=np.float64)
        const = self.constant_mask
        span = np.where(const, 1.0, self.high - self.low)
        up = (means - self.low) / span
        if self.clipped is not None:
            up = np.where(self.clipped, np.clip(up, 0.0, 1.0), up)
        flip = np.array([d == "minimize" for d in self.directions])
        norm = np.where(flip, 1.0 - up, up)
        return np.where(const, 0.5, norm)

    def category_scores(self, means: np.ndarray) -> np.ndarray:
        """(..., M) metric means -> (..., C) mean normalized value per category (``self.categories``)."""
        norm = self.normalize(means)
        cats = np.array(self.metric_categories)
        return np.stack([norm[..., cats == c].mean(axis=-1) for c in self.categories], axis=-1)

    def combine(self, category_scores: np.ndarray) -> np.ndarray:
        """(..., C) category scores -> (...) their weighted mean."""
        w = np.array([self.weights.get(c, 0.0) for c in self.categories], dtype=np.float64)
        return category_scores @ (w / w.sum())

    def score(self, means: np.ndarray) -> np.ndarray:
        """(..., M) metric means -> (...) the weighted score (1 = best on everything)."""
        return self.combine(self.category_scores(means))

    def coefficients(self) -> np.ndarray:
        """(M,) c with ``score(x) == c @ x + constant`` wherever no metric is clipped: each metric's
        share of its category's weight, over its range, signed by direction (0 for a constant
        metric). Applied to per-sample scores it gives each sample's contribution to the score."""
        cats = np.array(self.metric_categories)
        total = sum(self.weights.get(c, 0.0) for c in self.categories)
        share = np.array([self.weights.get(c, 0.0) / total / np.count_nonzero(cats == c) for c in cats])
        const = self.constant_mask
        span = np.where(const, 1.0, self.high - self.low)
        sign = np.array([-1.0 if d == "minimize" else 1.0 for d in self.directions])
        return np.where(const, 0.0, share * sign / span)


def competition_ranks(scores: np.ndarray, *, tol: float = 1e-6) -> np.ndarray:
    """1 = best (largest); scores within ``tol`` (float32 rounding on the normalized scale) share
    the better rank (1, 2, 2, 4)."""
    scores = np.asarray(scores, dtype=np.float64)
    return 1 + (scores[None, :] > scores[:, None] + tol).sum(axis=1)


def kendall_tau_b(a: np.ndarray, b: np.ndarray) -> float | None:
    """Kendall's tau-b of two score vectors (ties handled); None with fewer than 3 settings or no order."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if len(a) < 3:
        return None
    da = np.sign(a[:, None] - a[None, :])
    db = np.sign(b[:, None] - b[None, :])
    upper = np.triu_indices(len(a), k=1)
    da, db = da[upper], db[upper]
    n_a, n_b = np.count_nonzero(da), np.count_nonzero(db)
    if n_a == 0 or n_b == 0:
        return None
    return float((da * db).sum() / np.sqrt(n_a * n_b))


def weighted_median(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The weighted median along the last axis of ``values`` ((..., K), weights (K,) > 0).

    The smallest value whose cumulative weight reaches half the total; where the cumulative weight
    equals exactly half, the mean of that value and the next (the ordinary median for equal weights).
    """
    values = np.asarray(values, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    keep = weights > 0  # a weight of 0 leaves its value out, also as the upper half of a tie
    values, weights = values[..., keep], weights[keep]
    order = np.argsort(values, axis=-1, kind="stable")
    v = np.take_along_axis(values, order, axis=-1)
    cum = np.cumsum(weights[order], axis=-1)
    half = weights.sum() / 2.0
    tol = 1e-12 * weights.sum()
    k = np.argmax(cum >= half - tol, axis=-1)[..., None]
    at = np.take_along_axis(v, k, axis=-1)[..., 0]
    nxt = np.take_along_axis(v, np.minimum(k + 1, v.shape[-1] - 1), axis=-1)[..., 0]
    exact = np.abs(np.take_along_axis(cum, k, axis=-1)[..., 0] - half) <= tol
    return np.where(exact, (at + nxt) / 2.0, at)


@dataclass(frozen=True)
class RankScorer(Scorer):
    """Rank aggregation (``--method rank``), robust to metrics that disagree (after LATEC, NeurIPS 2024).

    Each metric's value becomes its standardized rank among the study's distinct settings: the
    mid-rank of the value, scaled so that the study's worst setting is 0 and its best 1 (ties share
    the mean of their ranks), minimized metrics flipped. Between two of the study's values (a bootstrap
    resample's mean) the rank is interpolated linearly. A category's score is the median of its metrics'
    ranks, and the setting's score the weighted median of its category scores (``weights``): one metric
    or category far from the rest moves the median by at most one place, where it moves a mean by its
    whole distance. Constant metrics score 0.5, as in :class:`Scorer`.
    """

    grid: tuple[np.ndarray, ...] = ()
    ranks: tuple[np.ndarray, ...] = ()

    @classmethod
    def fit(cls, values: np.ndarray, *, metrics: Sequence[str], directions: Sequence[str],
            categories: Sequence[str], weights: Mapping[str, float], robust: bool = True) -> "RankScorer":
        values = np.asarray(values, dtype=np.float64)
        grid, ranks = [], []
        n = len(values)
        for k in range(values.shape[1]):
            unique, counts = np.unique(values[:, k], return_counts=True)
            below = np.concatenate([[0], np.cumsum(counts)[:-1]])
            mid = below + (counts - 1) / 2.0  # 0-based mid-rank from the smallest value
            grid.append(unique)
            ranks.append(mid / (n - 1) if n > 1 else np.full(len(unique), 0.5))
        return cls(metrics=tuple(metrics), directions=tuple(directions), metric_categories=tuple(categories),
                   low=values.min(axis=0), high=values.max(axis=0), weights=dict(weights),
                   clipped=np.zeros(values.shape[1], dtype=bool), grid=tuple(grid), ranks=tuple(ranks))

    def normalize(self, means: np.ndarray) -> np.ndarray:
        """(..., M) metric means -> (..., M) standardized ranks, 1 = the study's best, direction respected."""
        means = np.asarray(means, dtype=np.float64)
        up = np.stack([np.interp(means[..., k], self.grid[k], self.ranks[k]) for k in range(len(self.metrics))],
                      axis=-1)
        flip = np.array([d == "minimize" for d in self.directions])
        return np.where(self.constant_mask, 0.5, np.where(flip, 1.0 - up, up))

    def category_scores(self, means: np.ndarray) -> np.ndarray:
        """(..., M) metric means -> (..., C) median standardized rank per category."""
        norm = self.normalize(means)
        cats = np.array(self.metric_categories)
        return np.stack([np.median(norm[..., cats == c], axis=-1) for c in self.categories], axis=-1)

    def combine(self, category_scores: np.ndarray) -> np.ndarray:
        """(..., C) category scores -> (...) their weighted median."""
        w = np.array([self.weights.get(c, 0.0) for c in self.categories], dtype=np.float64)
        return weighted_median(category_scores, w)


METHODS = {"score": Scorer, "rank": RankScorer}
