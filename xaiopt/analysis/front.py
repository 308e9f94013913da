"""The Pareto front on normalized metrics, and its compromise point (nearest the ideal).

On normalized metrics (1 = best, direction respected) every metric is maximized, so one
dominance test serves all studies. The ideal point has every metric at 1; the compromise is the
front's setting at the smallest Euclidean distance from it. Metrics constant over the study
carry no information and are left out of the distance.

Example::

    mask = pareto_mask(norm)                     # norm: (T, M) from Scorer.normalize
    k, distance = compromise(norm, informative=~scorer.constant_mask)
"""

from __future__ import annotations

import numpy as np

from xaiopt.study.pareto import nondominated


def pareto_mask(norm: np.ndarray) -> np.ndarray:
    """(T,) True for settings no other setting dominates (>= on all metrics, > on one)."""
    norm = np.asarray(norm, dtype=np.float64)
    return nondominated(norm, ["maximize"] * norm.shape[1])


def ideal_distance(norm: np.ndarray, informative: np.ndarray | None = None) -> np.ndarray:
    """(T,) Euclidean distance of each setting from the all-ones point (informative metrics only)."""
    norm = np.asarray(norm, dtype=np.float64)
    if informative is not None:
        norm = norm[:, np.asarray(informative, dtype=bool)]
    return np.sqrt(((1.0 - norm) ** 2).sum(axis=-1))


def compromise(norm: np.ndarray, informative: np.ndarray | None = None) -> tuple[int, float]:
    """Row index of the front's setting nearest the ideal point, and its distance (first row on ties)."""
    mask = pareto_mask(norm)
    dist = np.where(mask, ideal_distance(norm, informative), np.inf)
    k = int(np.argmin(dist))
    return k, float(dist[k])
