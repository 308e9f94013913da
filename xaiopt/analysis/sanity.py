"""Does each metric earn its vote? The study's reference explanations against its LRP settings.

Every study scores, once, explanations that need no search (:mod:`xaiopt.objective.references`: a
random attribution, a Sobel edge map, the gradient, input x gradient; study user attr
``xaiopt:references``). Per metric, this module says

- whether the metric ranks the **random** reference below the recommended setting, by a paired
  bootstrap over the evaluation samples of the metric's own per-sample scores (recommended minus
  random, sign by the metric's direction): a metric whose interval does not lie above 0 cannot tell
  the recommended explanation from noise on this model and data, and is **flagged**;
- where each reference would rank among the study's distinct LRP settings (1 = better than all);
- and, for the choice itself, which metrics **decide** it: the recommendation recomputed with each
  metric left out (same method and weights; a category left without metrics drops out), and whether
  it survives.

Example::

    rec = recommend(loaded)
    check = sanity_check(loaded, rec)
    print("\\n".join(check.lines))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from optuna.trial import TrialState

from xaiopt.analysis.bootstrap import percentile_interval, resample_indices
from xaiopt.metrics.packing import unpack_scores
from xaiopt.objective.attrs import distinct_settings
from xaiopt.study.manage import REFERENCES_ATTR, LoadedStudy
from xaiopt.study.per_sample import per_sample_scores

RANDOM = "random"


@dataclass(frozen=True)
class MetricSanity:
    """One metric against the references; ``difference`` = recommended minus random, positive = better."""

    metric: str
    direction: str
    recommended: float
    random: float | None
    difference: float | None
    low: float | None
    high: float | None
    flagged: bool
    # each reference's place among the study's distinct LRP settings and itself (1 = best), of `of`
    places: dict[str, int]
    of: int
    line: str


@dataclass(frozen=True)
class SanityCheck:
    metrics: list[MetricSanity]
    # metric -> the trial recommended without it (the same as now when the choice survives)
    leave_one_out: dict[str, int]
    decisive: list[str]
    references: list[str]
    lines: list[str]

    @property
    def flagged(self) -> list[str]:
        return [m.metric for m in self.metrics if m.flagged]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _better(direction: str) -> float:
    return 1.0 if direction == "maximize" else -1.0


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def leave_one_out(values: np.ndarray, numbers: list[int], scorer: Any) -> dict[str, int]:
    """For each metric, the setting (trial number) the same scoring would recommend without it."""
    metrics = list(scorer.metrics)
    out: dict[str, int] = {}
    if len(metrics) < 2:
        return out
    for k, m in enumerate(metrics):
        keep = [j for j in range(len(metrics)) if j != k]
        cats = [scorer.metric_categories[j] for j in keep]
        weights = {c: w for c, w in scorer.weights.items() if c in cats}
        if not any(w > 0 for w in weights.values()):
            continue  # the only weighted category went with it: no choice to compare
        fitted = type(scorer).fit(values[:, keep], metrics=[metrics[j] for j in keep],
                                  directions=[scorer.directions[j] for j in keep], categories=cats, weights=weights)
        score = fitted.score(values[:, keep])
        best = min(range(len(numbers)), key=lambda i: (-score[i], numbers[i]))
        out[m] = numbers[best]
    return out


def sanity_check(loaded: LoadedStudy, rec: Any, *, resamples: int = 2000, confidence: float = 0.95,
                 seed: int = 0) -> SanityCheck | None:
    """The per-metric check of ``rec`` (a :class:`~xaiopt.analysis.recommend.Recommendation` of ``loaded``)
    against the study's reference explanations, and the leave-one-out statement; None when the study
    has no complete trial. :func:`~xaiopt.analysis.recommend.recommend` runs it on what it has read
    already (:func:`check_settings`)."""
    from xaiopt.analysis.recommend import study_scorer

    complete = [t for t in loaded.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.values is not None]
    cands = distinct_settings(complete)[0]
    if not cands:
        return None
    values = np.array([t.values for t in cands], dtype=np.float64)
    scorer = study_scorer(loaded, dict(rec.weights), rec.method)
    return check_settings(loaded, rec, cands, values, scorer, resamples=resamples, confidence=confidence, seed=seed)


def check_settings(loaded: LoadedStudy, rec: Any, cands: list, values: np.ndarray, scorer: Any, *,
                   resamples: int, confidence: float, seed: int) -> SanityCheck:
    """:func:`sanity_check` on the study's distinct complete settings ``cands``, their metric vectors
    ``values`` and the Scorer that chose ``rec``."""
    stored = loaded.study.user_attrs.get(REFERENCES_ATTR) or {}
    scored = {name: r for name, r in stored.items() if isinstance(r, dict) and "values" in r}
    metrics = list(rec.metrics)
    numbers = [t.number for t in cands]
    best_trial = next(t for t in cands if t.number == rec.best.number)
    ours = per_sample_scores(best_trial)
    lines: list[str] = []
    rows: list[MetricSanity] = []
    if not scored:
        why = ("runtime.references: false" if not loaded.config.runtime.references else
               "the worker that completes the budget scores them once")
        lines.append(f"Reference explanations not scored yet ({why}): no per-metric sanity check.")
    if scored:
        names = list(scored)
        rnd = scored.get(RANDOM)
        rnd_scores = unpack_scores(rnd["scores"]) if rnd is not None and rnd.get("scores") else {}
        lines.append(f"Reference explanations scored once on the same samples ({', '.join(names)}), against the "
                     f"{len(cands)} distinct LRP settings:")
        for k, m in enumerate(metrics):
            sign = _better(rec.directions[m])
            rec_value = float(values[numbers.index(rec.best.number), k])
            places = {name: 1 + int(np.sum(sign * values[:, k] > sign * float(r["values"][m]) + 1e-12))
                      for name, r in scored.items() if m in r["values"]}
            rnd_value = None if rnd is None or m not in rnd["values"] else float(rnd["values"][m])
            diff = low = high = None
            flagged = False
            if rnd_value is not None:
                diff = sign * (rec_value - rnd_value)
                theirs = rnd_scores.get(m)
                mine = None if ours is None else ours.get(m)
                if mine is not None and theirs is not None and len(mine) == len(theirs):
                    d = sign * (np.asarray(mine, dtype=np.float64) - np.asarray(theirs, dtype=np.float64))
                    idx = resample_indices(len(d), resamples=resamples, seed=seed)
                    interval = percentile_interval(diff, d[idx].mean(axis=1), confidence)
                    low, high = interval.low, interval.high
                    flagged = not low > 0
                else:
                    flagged = not diff > 0
            where = ", ".join(f"{n} {_ordinal(p)}" for n, p in places.items())
            if rnd_value is None:
                verdict = "no random reference scored"
            elif flagged:
                worse = high is not None and high < 0 or high is None and diff is not None and diff < 0
                how = "scores the random reference better than" if worse else "cannot tell the random reference from"
                verdict = (f"FLAGGED: {how} the recommended setting "
                           f"(random {rnd_value:.4g}, recommended {rec_value:.4g}"
                           + (f", difference {diff:+.4g} [{low:+.4g}, {high:+.4g}])" if low is not None else ")"))
            else:
                beaten = int(np.sum(sign * values[:, k] > sign * rnd_value + 1e-12))
                verdict = (f"ranks random below the recommended setting (difference {diff:+.4g}"
                           + (f" [{low:+.4g}, {high:+.4g}]" if low is not None else "")
                           + f") and below {beaten} of {len(cands)} settings")
            line = f"{m}: {verdict}; places of {len(cands) + 1}: {where}."
            lines.append(f"  {line}")
            rows.append(MetricSanity(metric=m, direction=rec.directions[m], recommended=rec_value, random=rnd_value,
                                     difference=diff, low=low, high=high, flagged=flagged, places=places,
                                     of=len(cands) + 1, line=line))
        flagged = [r.metric for r in rows if r.flagged]
        if flagged:
            one = len(flagged) == 1
            lines.append(f"Flagged ({len(flagged)} of {len(metrics)}): {', '.join(flagged)} — "
                         f"{'it scores' if one else 'they score'} noise as well as or better than the recommended "
                         f"explanation here; consider a lower weight or leaving {'it' if one else 'them'} out "
                         f"(--prefer).")
    loo = leave_one_out(values, numbers, scorer)
    decisive = [m for m, n in loo.items() if n != rec.best.number]
    if loo:
        if decisive:
            changes = "; ".join(f"without {m}, trial {loo[m]}" for m in decisive)
            kept = [m for m in loo if m not in decisive]
            which = "it" if len(decisive) == 1 else "one"
            lines.append(f"Decided by: {', '.join(decisive)} (leaving {which} out changes the choice: {changes})"
                         + (f"; the choice survives leaving out {', '.join(kept)}." if kept else "."))
        else:
            lines.append(f"No single metric decides the choice: trial {rec.best.number} stays recommended when any "
                         f"one of the {len(loo)} metrics is left out.")
    return SanityCheck(metrics=rows, leave_one_out=loo, decisive=decisive, references=list(scored), lines=lines)
