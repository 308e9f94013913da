"""Multi-fidelity trials: the rule that prunes a setting clearly dominated on a subset of the samples.

A new setting is first scored on the first K search samples. It is pruned when ONE completed trial
beats it on EVERY metric (each in its own direction) by more than ``z`` standard errors of the
paired per-sample difference on those K samples: with d_i the completed trial's advantage on
sample i, mean(d) > z * std(d, ddof=1) / sqrt(K) for every metric. The completed trial's scores are
the first K of its stored full-sample scores (``xaiopt:per_sample``); the candidate's come from its
own evaluation on the K samples. A setting that survives is evaluated in full, exactly as with
multi-fidelity off, so a completed trial's values never depend on this rule.

The pairing is by sample, not by noise draw: the metrics that draw noise (sensitivity, random
logit, faithfulness correlation) draw it for the K samples afresh, so the candidate's subset
scores and the completed trial's first K differ by that noise too; the standard error of the
difference carries it. :func:`clearly_better` is the rule itself, shared with the replay estimate
of ``benchmarks/search_efficiency.py`` so that the two cannot drift.

Example::

    found = dominating({"sparseness": cand}, [(3, {"sparseness": full3})], {"sparseness": "maximize"}, z=2.0)
    found.by, found.margins          # 3, {'sparseness': 5.4}  (mean advantage in standard errors)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# a standard error below this is taken as this: an exactly constant advantage > 0 still dominates
SE_FLOOR = 1e-12


def clearly_better(advantage: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """(T,) whether each completed setting clearly dominates, and (T, M) its margins in standard errors.

    ``advantage``: (T, M, K) per-sample advantages of T completed settings over the candidate on M
    metrics and K samples, signed so that > 0 means the completed one is better (maximize: its score
    minus the candidate's; minimize: the candidate's minus its).
    """
    adv = np.asarray(advantage, dtype=np.float64)
    k = adv.shape[-1]
    se = np.maximum(adv.std(axis=-1, ddof=1) / math.sqrt(k), SE_FLOOR)
    margins = adv.mean(axis=-1) / se
    return (margins > z).all(axis=-1), margins


@dataclass(frozen=True)
class Domination:
    """The completed trial ``by`` that clearly beats the candidate on the first ``subset`` samples."""

    by: int
    subset: int
    z: float
    # per metric: the mean paired advantage of ``by`` (> 0: better, in its direction) and that mean in
    # standard errors
    advantage: dict[str, float]
    margins: dict[str, float]

    def reason(self) -> str:
        """One line for the trial's ``pruned`` user attr."""
        parts = ", ".join(f"{m} {self.advantage[m]:+.4g} ({self.margins[m]:.3g} se)" for m in self.margins)
        return (f"dominated by trial {self.by} on the first {self.subset} samples by more than z={self.z:g} "
                f"standard errors on every metric: {parts}")

    def to_dict(self) -> dict:
        return {"by": self.by, "subset": self.subset, "z": self.z,
                "advantage": dict(self.advantage), "margins": dict(self.margins)}


def dominating(candidate: Mapping[str, np.ndarray], completed: Sequence[tuple[int, Mapping[str, np.ndarray]]],
               directions: Mapping[str, str], *, z: float) -> Domination | None:
    """The completed trial that clearly dominates ``candidate``, or None.

    ``candidate``: ``{metric: (K,) scores}`` on the first K samples; ``completed``: (trial number,
    ``{metric: (N >= K,) scores}``) of finished trials; ``directions``: ``maximize``/``minimize`` per
    metric. A completed trial lacking a metric or holding fewer than K scores is not compared. Of
    several dominating trials, the one whose smallest margin is largest.
    """
    names = list(directions)
    k = len(next(iter(candidate.values())))
    sign = np.array([1.0 if directions[m] == "maximize" else -1.0 for m in names])
    cand = np.stack([np.asarray(candidate[m], dtype=np.float64) for m in names])
    numbers, rows = [], []
    for number, scores in completed:
        if all(m in scores and len(scores[m]) >= k for m in names):
            numbers.append(number)
            rows.append(np.stack([np.asarray(scores[m][:k], dtype=np.float64) for m in names]))
    if not rows:
        return None
    advantage = (np.stack(rows) - cand[None]) * sign[None, :, None]
    clear, margins = clearly_better(advantage, z)
    if not clear.any():
        return None
    best = int(np.argmax(np.where(clear, margins.min(axis=1), -np.inf)))
    mean = advantage[best].mean(axis=-1)
    return Domination(by=int(numbers[best]), subset=k, z=float(z),
                      advantage={m: float(mean[j]) for j, m in enumerate(names)},
                      margins={m: float(margins[best, j]) for j, m in enumerate(names)})
