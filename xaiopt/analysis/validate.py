"""Does the chosen setting hold on samples the search never saw?

A study picks its winner on the search set, so the winner's search scores are optimistic (the
winner's curse of any selection among noisy candidates). :func:`validate` scores the recommended
setting, the front's compromise, the top K of the front and every baseline on the held-out set
(``data.holdout``) and reports:

- per metric, the search value, the held-out value and the optimism (search minus held-out,
  signed so that a positive optimism means the search set made the setting look better);
- a paired bootstrap on the held-out samples: the recommended setting against each baseline
  (or, in a study without baselines, against the validated settings ranked below it);
- the rank agreement of search and held-out per category (Kendall's tau-b over the validated settings);
- one sentence: does the recommendation hold?

Scores are normalized with the study's :class:`~xaiopt.metrics.scoring.Scorer` fitted on the
search set, so search and held-out scores are on one scale. The recommendation *holds* when every
gain it showed on the search set (a baseline or lower-ranked setting it beat distinguishably) is
still distinguishable on the held-out set, and no validated setting beats it distinguishably there.
When the search set showed no distinguishable gain, there is nothing to hold, and it says so.

The results are stored as the study user attr ``xaiopt:validation``; no trial is added, so no
sampler ever learns from held-out samples.

Example::

    v = validate(loaded, top=3)          # scores the held-out samples with the study's own worker code
    print(v.text())
    v.holds, v.optimism["sparseness"]
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from optuna.trial import FrozenTrial

from xaiopt.analysis.bootstrap import PairedDifference, paired_bootstrap, verdict
from xaiopt.analysis.recommend import Recommendation, recommend, study_scorer
from xaiopt.errors import ConfigError, StudyError
from xaiopt.metrics.preferences import Prefer
from xaiopt.metrics.scoring import kendall_tau_b
from xaiopt.objective.attrs import explainer_text, spec_dict
from xaiopt.study.manage import LoadedStudy
from xaiopt.study.per_sample import per_sample_scores

VALIDATION_ATTR = "xaiopt:validation"

# spec dict -> {metric: (N_holdout,) scores} on the held-out samples
HoldoutEvaluator = Callable[[Mapping[str, Any]], Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class ValidatedSetting:
    """One setting's metric means on the search set (its trial's values) and on the held-out set."""

    number: int
    label: str
    roles: list[str]
    search: dict[str, float]
    holdout: dict[str, float]
    search_score: float
    holdout_score: float
    search_categories: dict[str, float]
    holdout_categories: dict[str, float]


@dataclass(frozen=True)
class HeldOutComparison:
    """The recommended setting against another, on the search set and on the held-out set."""

    name: str
    other: int
    search: PairedDifference | None
    holdout: PairedDifference | None

    @property
    def search_verdict(self) -> str:
        return verdict(self.search)

    @property
    def holdout_verdict(self) -> str:
        return verdict(self.holdout)


@dataclass(frozen=True)
class Validation:
    """What :func:`validate` returns; ``text()`` is what the CLI prints, ``to_dict()`` what the study stores."""

    study: str
    metrics: list[str]
    directions: dict[str, str]
    search_samples: int
    holdout_samples: int
    recommended: int
    settings: list[ValidatedSetting]
    optimism: dict[str, float]
    score_optimism: float
    shift: dict[str, float]
    comparisons: list[HeldOutComparison]
    rank_agreement: dict[str, float | None]
    holds: bool
    verdict: str
    confidence: float
    resamples: int
    notes: list[str] = field(default_factory=list)

    def setting(self, number: int) -> ValidatedSetting:
        return next(s for s in self.settings if s.number == number)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["comparisons"] = [
            {"name": c.name, "other": c.other, "search_verdict": c.search_verdict,
             "holdout_verdict": c.holdout_verdict,
             "search": c.search and c.search.score.to_dict(), "holdout": c.holdout and c.holdout.score.to_dict()}
            for c in self.comparisons
        ]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def text(self) -> str:
        rec = self.setting(self.recommended)
        arrow = {"maximize": "↑", "minimize": "↓"}
        width = max(len(m) for m in self.metrics) + 2
        lines = [self.verdict, "",
                 f"Recommended: trial {rec.number} ({rec.label}); {self.search_samples} search samples, "
                 f"{self.holdout_samples} held-out samples.",
                 f"{'metric'.ljust(width)}  {'search':>10}  {'held-out':>10}  {'optimism':>10}  {'others':>10}"]
        for m in self.metrics:
            lines.append(f"{(m + ' ' + arrow[self.directions[m]]).ljust(width)}  {rec.search[m]:>10.4g}  "
                         f"{rec.holdout[m]:>10.4g}  {self.optimism[m]:>+10.4g}  {self.shift[m]:>+10.4g}")
        lines.append(f"{'score'.ljust(width)}  {rec.search_score:>10.4f}  {rec.holdout_score:>10.4f}  "
                     f"{self.score_optimism:>+10.4f}")
        lines.append("(optimism: how much better the search set made it look, in each metric's better direction; "
                     "others: the median optimism of the other validated settings, what the held-out samples do "
                     "to every setting; the excess is the winner's curse)")
        if self.comparisons:
            lines.append("")
            lines.append(f"Paired bootstrap ({self.confidence:.0%} intervals of the score difference, "
                         f"recommended minus other):")
            for c in self.comparisons:
                def show(d: PairedDifference | None, verdict: str) -> str:
                    if d is None:
                        return "no per-sample scores"
                    return f"{verdict} {d.score.difference:+.3f} [{d.score.low:+.3f}, {d.score.high:+.3f}]"
                lines.append(f"  vs {c.name} (trial {c.other}): search {show(c.search, c.search_verdict)}; "
                             f"held-out {show(c.holdout, c.holdout_verdict)}")
        agree = ", ".join(f"{c} {'n/a' if t is None else f'{t:+.2f}'}" for c, t in self.rank_agreement.items())
        lines += ["", f"Rank agreement of search and held-out over {len(self.settings)} settings "
                      f"(Kendall tau-b per category): {agree}"]
        lines += self.notes
        return "\n".join(lines)


def _roles(rec: Recommendation, top: int) -> dict[int, list[str]]:
    """Trial number -> why it is validated: recommended, compromise, front #k, baseline NAME.

    ``rec`` ranks every distinct setting (``rec.top`` holds them all)."""
    roles: dict[int, list[str]] = {rec.best.number: ["recommended"]}
    if rec.best.baseline:
        roles[rec.best.number].append(f"baseline {rec.best.baseline}")
    if rec.compromise is not None:
        roles.setdefault(rec.compromise.number, []).append("compromise")
    for k, s in enumerate([s for s in rec.top if s.pareto][:top]):
        roles.setdefault(s.number, []).append(f"front #{k + 1}")
    for c in rec.comparisons:
        if c.kind == "baseline":
            roles.setdefault(c.other, []).append(f"baseline {c.name}")
    return roles


def _trial(loaded: LoadedStudy, number: int) -> FrozenTrial:
    return loaded.study.trials[number]


def validate(loaded: LoadedStudy, *, top: int = 3, prefer: Prefer = None,
             evaluate: HoldoutEvaluator | None = None, device: str | None = None, resamples: int = 2000,
             confidence: float = 0.95, seed: int = 0, store: bool = True) -> Validation:
    """Score the recommended, compromise, top-``top`` front and baseline settings on the held-out set.

    ``evaluate`` maps a spec dict to held-out per-sample scores; by default the study's own worker
    code scores the held-out samples on ``device`` (:func:`xaiopt.study.holdout.holdout_evaluator`).
    ``store`` writes the result into the study (user attr ``xaiopt:validation``).
    """
    if top < 0:
        raise ConfigError(f"--top must be >= 0, got {top}")
    # every distinct setting ranked: the front's top K and the baselines' aliases come from one ranking
    rec = recommend(loaded, prefer=prefer, top=10**9, resamples=resamples, confidence=confidence, seed=seed)
    if evaluate is None:
        from xaiopt.study.holdout import holdout_evaluator

        evaluate = holdout_evaluator(loaded, device=device)
    scorer = study_scorer(loaded, prefer)
    metrics = list(loaded.metric_names)
    directions = dict(rec.directions)
    roles = _roles(rec, top)
    numbers = sorted(roles, key=lambda n: (n != rec.best.number, n))
    held: dict[int, dict[str, np.ndarray]] = {}
    settings: list[ValidatedSetting] = []
    search_samples = 0
    for n in numbers:
        t = _trial(loaded, n)
        spec = spec_dict(t)
        if spec is None:
            raise StudyError(f"trial {n} of study {loaded.study.study_name!r} recorded no explainer to validate")
        scores = {m: np.asarray(v, dtype=np.float64) for m, v in evaluate(spec).items()}
        missing = [m for m in metrics if m not in scores]
        if missing:
            raise StudyError(f"held-out evaluation of trial {n} returned no scores for {', '.join(missing)}")
        if any(not np.isfinite(v).all() for v in scores.values()):
            raise StudyError(f"held-out evaluation of trial {n} gave NaN/inf scores")
        held[n] = scores
        search = np.array(t.values, dtype=np.float64)
        holdout = np.array([scores[m].mean() for m in metrics])
        per = per_sample_scores(t)
        if per is not None:
            search_samples = max(search_samples, max(len(v) for v in per.values()))
        settings.append(ValidatedSetting(
            number=n, label=explainer_text(t), roles=roles[n],
            search=dict(zip(metrics, map(float, search))), holdout=dict(zip(metrics, map(float, holdout))),
            search_score=float(scorer.score(search)), holdout_score=float(scorer.score(holdout)),
            search_categories=dict(zip(scorer.categories, map(float, scorer.category_scores(search)))),
            holdout_categories=dict(zip(scorer.categories, map(float, scorer.category_scores(holdout)))),
        ))
    best = settings[0]
    sign = {m: 1.0 if directions[m] == "maximize" else -1.0 for m in metrics}
    optimism = {m: sign[m] * (best.search[m] - best.holdout[m]) for m in metrics}
    # what the held-out set does to every setting (its samples may be harder or easier overall): the
    # median optimism of the other validated settings; the recommended setting's excess over it is
    # what choosing it on the search set added
    others_ = settings[1:]
    shift = {m: float(np.median([sign[m] * (s.search[m] - s.holdout[m]) for s in others_])) if others_ else 0.0
             for m in metrics}

    def compare(other: ValidatedSetting) -> tuple[PairedDifference | None, PairedDifference | None]:
        a, b = per_sample_scores(_trial(loaded, best.number)), per_sample_scores(_trial(loaded, other.number))
        on_search = None if a is None or b is None else paired_bootstrap(
            a, b, scorer, observed_a=np.array([best.search[m] for m in metrics]),
            observed_b=np.array([other.search[m] for m in metrics]), resamples=resamples, confidence=confidence,
            seed=seed)
        on_holdout = paired_bootstrap(
            held[best.number], held[other.number], scorer, observed_a=np.array([best.holdout[m] for m in metrics]),
            observed_b=np.array([other.holdout[m] for m in metrics]), resamples=resamples, confidence=confidence,
            seed=seed)
        return on_search, on_holdout

    baselines = [s for s in settings[1:] if any(r.startswith("baseline ") for r in s.roles)]
    against = baselines or [s for s in settings[1:] if s.search_score < best.search_score]
    comparisons = []
    for s in against:
        name = next((r[len("baseline "):] for r in s.roles if r.startswith("baseline ")), " / ".join(s.roles))
        comparisons.append(HeldOutComparison(name, s.number, *compare(s)))
    others = [s for s in settings[1:] if s not in against]
    beaten_by = []
    for s in others:
        _, on_holdout = compare(s)
        if on_holdout is not None and on_holdout.score.distinguishable and on_holdout.score.high < 0:
            beaten_by.append(s)
    beaten_by += [next(s for s in settings if s.number == c.other) for c in comparisons
                  if c.holdout_verdict == "worse"]

    cats = scorer.categories
    agreement = {c: kendall_tau_b(np.array([s.search_categories[c] for s in settings]),
                                  np.array([s.holdout_categories[c] for s in settings])) for c in cats}
    gains = [c for c in comparisons if c.search_verdict == "better"]
    lost = [c for c in gains if c.holdout_verdict != "better"]
    holdout_n = len(next(iter(held[best.number].values())))
    opt = best.search_score - best.holdout_score
    who_best = f"the recommended setting (trial {best.number})"
    where = f"on the {holdout_n} held-out samples"
    if beaten_by:
        holds = False
        who = ", ".join(f"trial {s.number} ({' / '.join(s.roles)})" for s in beaten_by)
        verdict = f"The recommendation does not hold: {where}, {who_best} is distinguishably worse than {who}."
    elif not gains:
        holds = False
        verdict = (f"The recommendation does not hold: {who_best} showed no distinguishable gain even on the "
                   f"search set (against {len(comparisons)} compared settings); its score optimism {where} is "
                   f"{opt:+.3f}.")
    elif lost:
        holds = False
        names = ", ".join(f"{c.name} (trial {c.other})" for c in lost)
        kept = [c for c in gains if c not in lost]
        if kept:
            still = ", ".join(f"{c.name} (trial {c.other})" for c in kept)
            verdict = (f"The recommendation holds only in part: {where}, {who_best} is still distinguishably better "
                       f"than {still}, but its gain over {names} on the search set is not distinguishable there "
                       f"(score optimism {opt:+.3f}; more held-out samples, data.n_samples, would tell).")
        else:
            verdict = (f"The recommendation does not hold: the distinguishable gain of {who_best} over {names} on "
                       f"the search set is not distinguishable {where} (score optimism {opt:+.3f}).")
    else:
        holds = True
        names = ", ".join(f"{c.name} (trial {c.other})" for c in gains)
        verdict = (f"The recommendation holds: {where}, {who_best} is still distinguishably better than "
                   f"{names} (score optimism {opt:+.3f}).")
    notes = []
    if search_samples == 0:
        notes.append("The trials stored no per-sample scores: search-set intervals are not available.")
    result = Validation(
        study=loaded.study.study_name, metrics=metrics, directions=directions, search_samples=search_samples,
        holdout_samples=holdout_n, recommended=best.number, settings=settings, optimism=optimism,
        score_optimism=float(opt), shift=shift, comparisons=comparisons, rank_agreement=agreement, holds=holds,
        verdict=verdict,
        confidence=confidence, resamples=resamples, notes=notes,
    )
    if store:
        loaded.study.set_user_attr(VALIDATION_ATTR, result.to_dict())
    return result
