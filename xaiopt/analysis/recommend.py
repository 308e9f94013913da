"""The recommended setting of a study, the confidence in it, and the front's compromise.

Method (docs/recommendation.md): every metric min-max normalized over the study's distinct
complete settings with its direction respected (1 = best), averaged per category, categories
weighted (equal by default); the settings ranked by that score; a paired bootstrap over the
samples compares the top setting with the runner-up, each baseline and the compromise of the
Pareto front (the front's setting nearest the all-ones ideal point).

Example::

    import xaiopt
    rec = xaiopt.recommend("quickstart", storage="sqlite:///xaiopt.db", prefer="faithfulness=2")
    rec.best.number, rec.best.label      # the recommended trial and its settings
    rec.comparisons[0].verdict           # 'indistinguishable' or 'better' / 'worse'
    print(rec.text())
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from optuna.trial import FrozenTrial, TrialState

from xaiopt.analysis.bootstrap import PairedDifference, paired_bootstrap, verdict
from xaiopt.analysis.front import compromise as front_compromise
from xaiopt.analysis.front import ideal_distance, pareto_mask
from xaiopt.errors import ConfigError, StudyError
from xaiopt.metrics.preferences import Prefer, category_weights
from xaiopt.metrics.scoring import METHODS, Scorer, competition_ranks, kendall_tau_b
from xaiopt.objective.attrs import BASELINE as BASELINE_ATTR
from xaiopt.objective.attrs import distinct_settings, explainer_text, explored_means
from xaiopt.study.manage import LoadedStudy, load_study
from xaiopt.study.per_sample import per_sample_scores


@dataclass(frozen=True)
class Setting:
    """One distinct explainer setting of the study (its first complete trial)."""

    number: int
    label: str
    baseline: str | None
    values: dict[str, float]
    normalized: dict[str, float]
    categories: dict[str, float]
    category_ranks: dict[str, int]
    score: float
    rank: int
    pareto: bool
    ideal_distance: float
    per_sample: bool


@dataclass(frozen=True)
class Comparison:
    """The recommended setting against another (``kind``: runner-up, baseline, compromise)."""

    kind: str
    name: str
    other: int
    difference: PairedDifference | None
    note: str = ""

    @property
    def verdict(self) -> str:
        """'better' / 'worse' (interval excludes 0), 'indistinguishable', or 'unknown' (no per-sample scores)."""
        return verdict(self.difference)


@dataclass(frozen=True)
class Recommendation:
    """What :func:`recommend` returns; ``text()`` is the paragraph the CLI prints, ``to_dict()`` its JSON."""

    study: str
    metrics: list[str]
    directions: dict[str, str]
    metric_categories: dict[str, str]
    weights: dict[str, float]
    complete_trials: int
    settings: int
    top: list[Setting]
    compromise: Setting | None
    comparisons: list[Comparison]
    missing_baselines: dict[str, str]
    constant_metrics: list[str]
    rule: str
    samples: int | None
    resamples: int
    confidence: float
    seed: int
    pareto_size: int = 0
    notes: list[str] = field(default_factory=list)
    # what `xaiopt study validate` found on the held-out samples, when it validated this very setting
    validation: dict[str, Any] | None = None
    method: str = "score"
    # where the weights came from: "--prefer", "decision.prefer" (the study's config) or "" (equal by default)
    weights_from: str = ""
    # the other method's choice and how far the two orderings of the settings agree (method_agreement)
    agreement: dict[str, Any] | None = None
    # each metric against the study's reference explanations, and which metrics decide (analysis/sanity.py)
    sanity: dict[str, Any] | None = None

    @property
    def best(self) -> Setting:
        return self.top[0]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["comparisons"] = [
            {"kind": c.kind, "name": c.name, "other": c.other, "verdict": c.verdict, "note": c.note,
             "score": c.difference and c.difference.score.to_dict(),
             "categories": c.difference and {k: v.to_dict() for k, v in c.difference.categories.items()},
             "held_fixed": c.difference and c.difference.held_fixed}
            for c in self.comparisons
        ]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def text(self) -> str:
        from xaiopt.analysis.render import render_text

        return render_text(self)


# how each method scores a setting, in the words of `recommend` and the report
RULES = {
    "score": ("each metric min-max normalized over the study's distinct complete settings (1 = best, minimized "
              "metrics flipped), averaged per category, categories combined by a weighted mean"),
    "rank": ("each metric's value replaced by its standardized rank among the study's distinct complete settings "
             "(0 = worst, 1 = best, ties share their mean rank, minimized metrics flipped), the median taken per "
             "category, categories combined by a weighted median (rank aggregation, robust to metrics that "
             "disagree)"),
}


def _label(t: FrozenTrial) -> str:
    return explainer_text(t)


def _scoring(loaded: LoadedStudy, prefer: Prefer, method: str = "score"):
    """The study's distinct complete settings, their values, the Scorer fitted on them and the number of
    pruned settings (racing) whose stage means widen its range."""
    metrics = loaded.metric_names
    directions = [d.name.lower() for d in loaded.study.directions]
    categories = loaded.metric_categories
    complete = [t for t in loaded.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.values is not None]
    if not complete:
        raise StudyError(f"study {loaded.study.study_name!r} has no complete trials yet: nothing to recommend "
                         f"(run `xaiopt study optimize {shlex.quote(loaded.study.study_name)}`)")
    present = [c for c in dict.fromkeys(categories)]
    chosen, source = decision_prefer(loaded, prefer)
    weights = category_weights(chosen, present=present, what=source)
    cands, alias = distinct_settings(complete)
    values = np.array([t.values for t in cands], dtype=np.float64)
    if method != "score":  # ranks are among the complete settings only
        ranks = METHODS[method].fit(values, metrics=metrics, directions=directions, categories=categories,
                                    weights=weights)
        return complete, cands, alias, values, ranks, 0
    # the normalization spans the settings the study explored: a racing study's pruned ones at their stage means
    explored = explored_means(loaded.study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)), metrics)
    scorer = Scorer.fit(values, metrics=metrics, directions=directions, categories=categories, weights=weights,
                        also=explored)
    return complete, cands, alias, values, scorer, len(explored)


def decision_prefer(loaded: LoadedStudy, prefer: Prefer) -> tuple[Prefer, str]:
    """The category weights a recommendation ranks by and where they come from: an explicit
    ``prefer`` (``--prefer``), else the study's own ``decision.prefer`` (equal when it has none)."""
    if prefer:
        return prefer, "--prefer"
    stored = loaded.config.decision.prefer
    return (dict(stored) if stored else None), "decision.prefer"


def study_scorer(loaded: LoadedStudy, prefer: Prefer = None, method: str = "score") -> Scorer:
    """The Scorer that :func:`recommend` ranks with (normalization over the distinct complete settings)."""
    _checked_method(method)
    return _scoring(loaded, prefer, method)[4]


def _checked_method(method: str) -> None:
    if method not in METHODS:
        raise ConfigError(f"--method: {method!r} is not a recommendation method (valid: {', '.join(METHODS)})")


def recommend(study: LoadedStudy | str, *, storage: str | None = None, prefer: Prefer = None, top: int = 3,
              resamples: int = 2000, confidence: float = 0.95, seed: int = 0, method: str = "score") -> Recommendation:
    """Recommend a setting of a finished (or running) study, with a paired-bootstrap confidence statement.

    ``prefer``: category weights (``"faithfulness=2,localization=1"``, a list of such strings or a
    dict); categories not named weigh 1. Deterministic for a given study, preference and ``seed``.
    ``method``: ``score`` (min-max normalization, category means, weighted mean; :class:`Scorer`) or
    ``rank`` (standardized ranks, category medians, weighted median; :class:`RankScorer`).

    Example::

        rec = recommend("quickstart", storage="sqlite:///xaiopt.db")
        print(rec.text())
    """
    if top < 1:
        raise ConfigError(f"--top must be >= 1, got {top}")
    if resamples < 100:
        raise ConfigError(f"--resamples must be >= 100, got {resamples}")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be between 0 and 1, got {confidence}")
    _checked_method(method)
    loaded = study if isinstance(study, LoadedStudy) else load_study(study, storage=storage)
    metrics = loaded.metric_names
    complete, cands, alias, values, scorer, explored = _scoring(loaded, prefer, method)
    directions = list(scorer.directions)
    categories = list(scorer.metric_categories)
    weights = {c: scorer.weights[c] for c in scorer.categories}
    norm = scorer.normalize(values)
    cat = scorer.category_scores(values)
    score = scorer.combine(cat)
    order = sorted(range(len(cands)), key=lambda i: (-score[i], cands[i].number))
    rank_of = {i: r + 1 for r, i in enumerate(order)}
    cat_ranks = np.stack([competition_ranks(cat[:, k]) for k in range(cat.shape[1])], axis=1)
    front = pareto_mask(norm)
    informative = ~scorer.constant_mask
    k_comp, _ = front_compromise(norm, informative)
    dist = ideal_distance(norm, informative)
    scores = {t.number: per_sample_scores(t) for t in cands}

    def setting(i: int) -> Setting:
        t = cands[i]
        return Setting(
            number=t.number, label=_label(t), baseline=t.user_attrs.get(BASELINE_ATTR),
            values=dict(zip(metrics, map(float, values[i]))), normalized=dict(zip(metrics, map(float, norm[i]))),
            categories=dict(zip(scorer.categories, map(float, cat[i]))),
            category_ranks=dict(zip(scorer.categories, map(int, cat_ranks[i]))),
            score=float(score[i]), rank=rank_of[i], pareto=bool(front[i]), ideal_distance=float(dist[i]),
            per_sample=scores[t.number] is not None,
        )

    index = {t.number: i for i, t in enumerate(cands)}
    best = order[0]

    differences: dict[int, PairedDifference | None] = {}

    def compare(kind: str, name: str, i: int, note: str = "") -> Comparison:
        if i not in differences:
            a, b = scores[cands[best].number], scores[cands[i].number]
            differences[i] = None if a is None or b is None else paired_bootstrap(
                a, b, scorer, observed_a=values[best], observed_b=values[i], resamples=resamples,
                confidence=confidence, seed=seed)
        return Comparison(kind=kind, name=name, other=cands[i].number, difference=differences[i], note=note)

    comparisons = []
    if len(order) > 1:
        comparisons.append(compare("runner-up", "runner-up", order[1]))
    baselines: dict[str, int] = {}
    for t in sorted(complete, key=lambda t: t.number):
        label = t.user_attrs.get(BASELINE_ATTR)
        if label is not None and label not in baselines:
            baselines[label] = alias[t.number]
    for label, number in baselines.items():
        i = index.get(number)
        if i is None or i == best:
            continue
        note = "" if cands[i].user_attrs.get(BASELINE_ATTR) == label else f"same setting as trial {number}"
        comparisons.append(compare("baseline", label, i, note))
    if k_comp != best:
        comparisons.append(compare("compromise", "compromise", k_comp))
    missing = {}
    for t in loaded.study.get_trials(deepcopy=False):
        label = t.user_attrs.get(BASELINE_ATTR)
        if label is not None and label not in baselines:
            missing[label] = t.state.name.lower()
    samples = next((d.difference.samples for d in comparisons if d.difference is not None), None)
    own = scores[cands[best].number]
    if samples is None and own is not None:
        samples = max(len(v) for v in own.values())
    notes = []
    for m in scorer.outliers:
        k = metrics.index(m)
        beyond = [cands[i].number for i in range(len(cands)) if not scorer.low[k] <= values[i, k] <= scorer.high[k]]
        notes.append(f"{m}: trial{'s' if len(beyond) > 1 else ''} {', '.join(map(str, beyond))} lie beyond the "
                     f"outlier fences (quartiles -/+ 3 interquartile ranges), so {m} is normalized over "
                     f"[{scorer.low[k]:.4g}, {scorer.high[k]:.4g}] and they score 0 or 1 on it.")
    if any(s is None for s in scores.values()):
        n = sum(s is None for s in scores.values())
        notes.append(f"{n} of {len(cands)} settings stored no per-sample scores (trials run before xaiopt kept "
                     f"them): comparisons with them have no confidence interval.")
    if explored:
        notes.append(f"The normalization spans the {len(cands)} complete settings and the {explored} that racing "
                     f"pruned, at their stage means (docs/search.md): the range the study explored.")
    rule = RULES[method]
    agreement = method_agreement(values, scorer, [t.number for t in cands], method=method)
    if agreement is not None:
        notes.append(agreement["text"])
    validation = loaded.study.user_attrs.get("xaiopt:validation")
    best_number = cands[order[0]].number
    if validation is not None and validation.get("recommended") != best_number:
        notes.append(f"A held-out validation is stored for trial {validation.get('recommended')}, not for this "
                     f"recommendation (other weights, or trials added since): run `xaiopt study validate "
                     f"{loaded.study.study_name}` again.")
        validation = None
    rec = Recommendation(
        validation=validation,
        study=loaded.study.study_name, metrics=list(metrics), directions=dict(zip(metrics, directions)),
        metric_categories=dict(zip(metrics, categories)), weights=weights, complete_trials=len(complete),
        settings=len(cands), top=[setting(i) for i in order[:top]], compromise=setting(k_comp),
        comparisons=comparisons, missing_baselines=missing, constant_metrics=scorer.constant, rule=rule,
        samples=samples, resamples=resamples, confidence=confidence, seed=seed, pareto_size=int(front.sum()),
        notes=notes, method=method, agreement=agreement,
        weights_from="--prefer" if prefer else ("decision.prefer" if loaded.config.decision.prefer else ""),
    )
    from xaiopt.analysis.sanity import check_settings

    check = check_settings(loaded, rec, cands, values, scorer, resamples=resamples, confidence=confidence, seed=seed)
    return replace(rec, sanity=check.to_dict())


def method_agreement(values: np.ndarray, scorer: Scorer, numbers: list[int], *, method: str,
                     top: int = 5) -> dict[str, Any] | None:
    """How the other recommendation method (score <-> rank) ranks the same distinct settings: its
    choice, where it stands in this method's order, Kendall's tau-b of the two orderings and the overlap of
    the two top-``top`` lists. None with fewer than 3 settings (nothing to agree on)."""
    if len(numbers) < 3:
        return None
    other = "rank" if method == "score" else "score"
    weights = {c: scorer.weights[c] for c in scorer.categories}
    theirs = METHODS[other].fit(values, metrics=scorer.metrics, directions=scorer.directions,
                                categories=scorer.metric_categories, weights=weights)
    mine, their = scorer.score(values), theirs.score(values)

    def order(score: np.ndarray) -> list[int]:
        return sorted(range(len(numbers)), key=lambda i: (-score[i], numbers[i]))

    ours, others = order(mine), order(their)
    k = min(top, len(numbers))
    overlap = len({numbers[i] for i in ours[:k]} & {numbers[i] for i in others[:k]})
    pick = numbers[others[0]]
    place = ours.index(others[0]) + 1
    tau = kendall_tau_b(mine, their)
    names = {"score": "the weighted score (min-max, means)", "rank": "rank aggregation (standardized ranks, medians)"}
    same = (f"also recommends trial {pick}" if place == 1 else
            f"would recommend trial {pick} instead (rank {place} here)")
    shown = "n/a (no order)" if tau is None else f"{tau:.2f}"
    text = (f"Second method: {names[other]} {same}; the two orderings of the {len(numbers)} settings agree with "
            f"Kendall's tau {shown}, and {overlap} of their top {k} are shared.")
    return {"method": other, "recommended": pick, "rank_here": place, "kendall_tau": tau,
            "top": k, "top_shared": overlap, "text": text}
