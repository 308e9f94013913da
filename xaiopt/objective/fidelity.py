"""Multi-fidelity trials: the rules that prune a setting on a subset of the samples.

Two rules (``fidelity.rule``), applied after each stage of a racing trial (the first K1, then K2, ...
search samples):

- ``decision`` (the default; :func:`racing_loss`): the setting *loses the race* when the study's
  incumbent (its best complete setting by the decision's weighted score, the ranking of ``study
  recommend``) beats it on that score by more than ``z`` standard errors of the paired per-sample
  difference on the K samples so far.
- ``dominance`` (:func:`dominating`): the setting is pruned when one completed trial clearly
  dominates it on every metric, as below.

The decision's weighted score is linear in the metric means wherever the normalization does not
clip (:meth:`xaiopt.metrics.scoring.Scorer.coefficients`), so the per-sample score difference of
two settings is ``coef @ (incumbent_i - candidate_i)`` and its mean is their score difference. The
normalization is the one ``recommend`` fits at the time: over the study's distinct complete settings
and the settings pruned so far at their stage means (:func:`incumbent`'s ``explored``).

Dominance: after a stage of K search samples, the setting is pruned when ONE completed trial
beats it on EVERY metric (each in its own direction) by more than ``z`` standard errors of the
paired per-sample difference on those K samples: with d_i the completed trial's advantage on
sample i, mean(d) > z * std(d, ddof=1) / sqrt(K) for every metric. The completed trial's scores are
the first K of its stored full-sample scores (``xaiopt:per_sample``); the candidate's come from its
own evaluation on the K samples. A setting that survives is evaluated in full, exactly as with
multi-fidelity off, so a completed trial's values never depend on this rule.

The pairing is by sample, not by noise draw: the metrics that draw noise (sensitivity, random
logit, faithfulness correlation) draw it for the K samples afresh, so the candidate's subset
scores and the completed trial's first K differ by that noise too; the standard error of the
difference carries it. :func:`clearly_better` is the test itself; the replays of
``benchmarks/racing.py`` and ``benchmarks/search_efficiency.py`` call these functions, so that a
benchmark and a trial cannot drift.

Example::

    found = dominating({"sparseness": cand}, [(3, {"sparseness": full3})], {"sparseness": "maximize"}, z=2.0)
    found.by, found.margins          # 3, {'sparseness': 5.4}  (mean advantage in standard errors)
    inc = incumbent([(0, v0, s0), (1, v1, s1)], metrics=["sparseness"], directions=["maximize"],
                    categories=["complexity"], weights={"complexity": 1.0})
    racing_loss({"sparseness": cand}, inc, z=1.0)      # a RaceLoss, or None when it does not lose
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from xaiopt.metrics.scoring import Scorer

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
    # the racing stage it was found at, counted from 1
    stage: int = 1

    def reason(self) -> str:
        """One line for the trial's ``pruned`` user attr."""
        parts = ", ".join(f"{m} {self.advantage[m]:+.4g} ({self.margins[m]:.3g} se)" for m in self.margins)
        return (f"dominated by trial {self.by} on the first {self.subset} samples by more than z={self.z:g} "
                f"standard errors on every metric: {parts}")

    def to_dict(self) -> dict:
        return {"rule": "dominance", "by": self.by, "stage": self.stage, "subset": self.subset, "z": self.z,
                "advantage": dict(self.advantage), "margins": dict(self.margins)}


def dominating(candidate: Mapping[str, np.ndarray], completed: Sequence[tuple[int, Mapping[str, np.ndarray]]],
               directions: Mapping[str, str], *, z: float, stage: int = 1) -> Domination | None:
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
    return Domination(by=int(numbers[best]), subset=k, z=float(z), stage=stage,
                      advantage={m: float(mean[j]) for j, m in enumerate(names)},
                      margins={m: float(margins[best, j]) for j, m in enumerate(names)})


@dataclass(frozen=True)
class RaceLoss:
    """The candidate lost the race to the incumbent ``by`` on the first ``subset`` samples (stage ``stage``,
    counted from 1): the incumbent's decision score is higher by ``advantage`` (the mean per-sample
    difference), ``margin`` standard errors ``se`` of it, more than ``z``."""

    by: int
    stage: int
    subset: int
    z: float
    advantage: float
    se: float
    margin: float
    weights: dict[str, float]

    def reason(self) -> str:
        """One line for the trial's ``pruned`` user attr."""
        return (f"lost the race at stage {self.stage} ({self.subset} samples) to the incumbent, trial {self.by}: "
                f"its decision score is higher by {self.advantage:.4g} ({self.margin:.3g} se > z={self.z:g})")

    def to_dict(self) -> dict:
        return {"rule": "decision", "by": self.by, "stage": self.stage, "subset": self.subset, "z": self.z,
                "advantage": self.advantage, "se": self.se, "margin": self.margin, "weights": dict(self.weights)}


@dataclass(frozen=True)
class Incumbent:
    """The setting a racing candidate must beat: trial ``number``, its per-sample scores, and the
    coefficients (per metric, in ``metrics`` order) that turn a per-sample metric vector into its
    decision score (up to a constant)."""

    number: int
    scores: dict[str, np.ndarray]
    metrics: tuple[str, ...]
    coefficients: np.ndarray
    weights: dict[str, float]


def incumbent(completed: Sequence[tuple[int, Sequence[float], Mapping[str, np.ndarray]]], *,
              metrics: Sequence[str], directions: Sequence[str], categories: Sequence[str],
              weights: Mapping[str, float], explored: Sequence[Sequence[float]] = ()) -> Incumbent | None:
    """The best of the completed distinct settings by the decision's weighted score (a
    :class:`~xaiopt.metrics.scoring.Scorer` fitted on them, as ``study recommend`` fits it; ties:
    the earliest), or None with fewer than two (a range needs two settings).

    ``completed``: (trial number, metric vector in ``metrics`` order, ``{metric: (N,) per-sample
    scores}``), one per distinct setting. ``explored``: the stage means of the settings pruned so far
    (metric vectors in ``metrics`` order); they widen the normalization's range to the settings the
    study explored, as ``study recommend``'s does, and are never the incumbent.
    """
    if len(completed) < 2:
        return None
    values = np.array([list(v) for _, v, _ in completed], dtype=np.float64)
    scorer = Scorer.fit(values, metrics=metrics, directions=directions, categories=categories, weights=weights,
                        also=explored)
    best = int(np.argmax(scorer.score(values)))
    number, _, scores = completed[best]
    return Incumbent(number=int(number), scores={m: np.asarray(s, dtype=np.float64) for m, s in scores.items()},
                     metrics=tuple(metrics), coefficients=scorer.coefficients(),
                     weights={c: float(scorer.weights[c]) for c in scorer.categories})


def racing_loss(candidate: Mapping[str, np.ndarray], inc: Incumbent, *, z: float, stage: int = 1) -> RaceLoss | None:
    """Whether ``candidate`` (``{metric: (K,) scores}`` on the first K samples) loses to ``inc``:
    with d_i = coef @ (incumbent_i - candidate_i) on the K samples, mean(d) > z * std(d, ddof=1) / sqrt(K).
    None when it does not lose (or all coefficients are 0: no metric ranks anything yet)."""
    k = len(next(iter(candidate.values())))
    if not np.any(inc.coefficients) or any(len(inc.scores[m]) < k for m in inc.metrics):
        return None
    cand = np.stack([np.asarray(candidate[m], dtype=np.float64) for m in inc.metrics])
    ref = np.stack([inc.scores[m][:k] for m in inc.metrics])
    d = inc.coefficients @ (ref - cand)
    clear, margins = clearly_better(d[None, None, :], z)
    if not clear[0]:
        return None
    se = max(float(d.std(ddof=1)) / math.sqrt(k), SE_FLOOR)
    return RaceLoss(by=inc.number, stage=stage, subset=k, z=float(z), advantage=float(d.mean()), se=se,
                    margin=float(margins[0, 0]), weights=dict(inc.weights))


def first_loss(parts: Iterable[Mapping[str, Any]], *, metrics: Sequence[str], z: float,
               inc: Incumbent | None = None, completed: Sequence[tuple[int, Mapping[str, np.ndarray]]] = (),
               directions: Mapping[str, str] | None = None
               ) -> tuple[RaceLoss | Domination | None, dict[str, np.ndarray]]:
    """Run the stages: each of ``parts`` (one stage's per-sample scores, ``{metric: (k,)}``) is appended to
    the stages before it, then the rule is applied to the samples so far: with ``inc`` the race
    against it (:func:`racing_loss`), else dominance by one of ``completed`` (:func:`dominating`,
    ``directions`` per metric). Returns the first loss (None after a last stage survived) and the
    scores so far. ``parts`` is consumed lazily, so a stage after a loss is never evaluated. The trial
    and the replay of ``benchmarks/racing.py`` both run their stages through here."""
    so_far: dict[str, np.ndarray] = {}
    for stage, part in enumerate(parts, 1):
        so_far = {m: np.concatenate([so_far.get(m, np.zeros(0)), np.asarray(part[m], dtype=np.float64)])
                  for m in metrics}
        found: RaceLoss | Domination | None
        if inc is not None:
            found = racing_loss(so_far, inc, z=z, stage=stage)
        else:
            assert directions is not None
            found = dominating(so_far, completed, directions, z=z, stage=stage)
        if found is not None:
            return found, so_far
    return None, so_far
