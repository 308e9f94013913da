"""Paired bootstrap over the evaluation samples: is one setting's score really above another's?

Both settings were scored on the same N samples, so the resamples draw sample *indices* (with
replacement, from a seeded generator) and recompute both settings' per-metric means on the same
draw. Each resample goes through the study's :class:`~xaiopt.metrics.scoring.Scorer` (min-max
fixed on the study, category means, weights); the percentiles of the difference give the
interval. An interval that contains 0 means the two settings are not distinguishable on these
samples.

Example::

    diff = paired_bootstrap(scores_a, scores_b, scorer, observed_a=values_a, observed_b=values_b)
    diff.score.distinguishable     # False when the interval contains 0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from xaiopt.metrics.scoring import Scorer

# on the normalized scale (1 = the study's range of a metric) a difference this small is float32
# rounding (a canonized twin and its model compute the same function to ~1e-7), never a finding
NOISE = 1e-6


@dataclass(frozen=True)
class Interval:
    """An observed difference (a - b) and its bootstrap interval."""

    difference: float
    low: float
    high: float

    @property
    def distinguishable(self) -> bool:
        """The interval excludes 0 (by more than float32 rounding, :data:`NOISE`)."""
        return self.low > NOISE or self.high < -NOISE

    def to_dict(self) -> dict[str, float | bool]:
        return {"difference": self.difference, "low": self.low, "high": self.high,
                "distinguishable": self.distinguishable}


@dataclass(frozen=True)
class PairedDifference:
    """Score difference of two settings, overall and per category, on resamples of the same samples."""

    score: Interval
    categories: dict[str, Interval]
    samples: int
    resamples: int
    confidence: float
    seed: int
    held_fixed: list[str] = field(default_factory=list)  # metrics without one score per sample


def verdict(d: PairedDifference | None) -> str:
    """'better' / 'worse' (the interval of ``a - b`` excludes 0), 'indistinguishable', or 'unknown'
    (no per-sample scores to compare)."""
    if d is None:
        return "unknown"
    if not d.score.distinguishable:
        return "indistinguishable"
    return "better" if d.score.low > 0 else "worse"


def resample_indices(n: int, *, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) sample indices drawn with replacement; the same for a given n and seed."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def percentile_interval(observed: float, draws: np.ndarray, confidence: float) -> Interval:
    """The observed difference with the percentile interval of its bootstrap ``draws``."""
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    return Interval(float(observed), float(low), float(high))


def _resampled_means(scores: Mapping[str, np.ndarray], observed: np.ndarray, metrics: tuple[str, ...],
                     idx: np.ndarray, paired: list[bool]) -> np.ndarray:
    out = np.empty((len(idx), len(metrics)))
    for j, m in enumerate(metrics):
        if paired[j]:
            out[:, j] = np.asarray(scores[m], dtype=np.float64)[idx].mean(axis=1)
        else:
            out[:, j] = observed[j]
    return out


def paired_bootstrap(scores_a: Mapping[str, np.ndarray], scores_b: Mapping[str, np.ndarray], scorer: Scorer, *,
                     observed_a: np.ndarray, observed_b: np.ndarray, resamples: int = 2000,
                     confidence: float = 0.95, seed: int = 0) -> PairedDifference | None:
    """The bootstrap interval of ``score(a) - score(b)`` and of each category's difference.

    ``scores_*`` are per-sample scores (``{metric: (N,)}``), ``observed_*`` the trials' metric
    vectors (the point estimates, in ``scorer.metrics`` order). A metric whose vectors are not N
    long in both settings (a batch-level score) is held at its observed value in every resample
    and named in ``held_fixed``. None when no metric has paired per-sample scores.
    """
    metrics = scorer.metrics
    lengths = [(len(scores_a[m]) if m in scores_a else 0, len(scores_b[m]) if m in scores_b else 0)
               for m in metrics]
    n = max((la for la, lb in lengths if la == lb and la > 1), default=0)
    if n == 0:
        return None
    paired = [la == lb == n for la, lb in lengths]
    observed_a = np.asarray(observed_a, dtype=np.float64)
    observed_b = np.asarray(observed_b, dtype=np.float64)
    idx = resample_indices(n, resamples=resamples, seed=seed)
    cat_a = scorer.category_scores(_resampled_means(scores_a, observed_a, metrics, idx, paired))
    cat_b = scorer.category_scores(_resampled_means(scores_b, observed_b, metrics, idx, paired))
    obs_cat = scorer.category_scores(observed_a) - scorer.category_scores(observed_b)
    score = percentile_interval(float(scorer.combine(obs_cat)), scorer.combine(cat_a) - scorer.combine(cat_b),
                                confidence)
    cats = {c: percentile_interval(float(obs_cat[k]), cat_a[:, k] - cat_b[:, k], confidence)
            for k, c in enumerate(scorer.categories)}
    return PairedDifference(score=score, categories=cats, samples=n, resamples=resamples, confidence=confidence,
                            seed=seed, held_fixed=[m for m, p in zip(metrics, paired) if not p])
