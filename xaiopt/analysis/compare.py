"""Per-class settings against the all-class setting, on each class's held-out samples.

The paper tuned its explainers per class. :func:`compare_per_class` asks whether that is worth it:
for every per-class study of an all-class study (``xaiopt study create --per-class``), it scores
the class study's recommended setting and the all-class study's recommended setting on that
class's held-out samples, and compares them with a paired bootstrap under the class study's own
normalization. A per-class setting is worth keeping only where it is distinguishably better there.

Example::

    result = compare_per_class(load_study("quickstart", storage=url))
    print(result.text())
    [row.cls for row in result.rows if row.verdict == "per-class better"]
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from xaiopt.analysis.bootstrap import PairedDifference, paired_bootstrap, verdict
from xaiopt.analysis.recommend import recommend, study_scorer
from xaiopt.analysis.validate import HoldoutEvaluator
from xaiopt.errors import StudyError
from xaiopt.metrics.preferences import Prefer
from xaiopt.objective.attrs import explainer_text, spec_dict
from xaiopt.study.manage import LoadedStudy, load_study
from xaiopt.study.per_class import CLASS_ATTR, class_studies

COMPARISON_ATTR = "xaiopt:per_class_comparison"



@dataclass(frozen=True)
class ClassRow:
    """One class: its own recommended setting against the all-class one, on its held-out samples."""

    cls: str
    study: str
    per_class_trial: int
    per_class_label: str
    all_class_trial: int
    all_class_label: str
    same_setting: bool
    holdout_samples: int
    per_class_score: float
    all_class_score: float
    difference: PairedDifference | None

    @property
    def verdict(self) -> str:
        if self.same_setting:
            return "same setting"
        said = verdict(self.difference)
        return {"better": "per-class better", "worse": "all-class better"}.get(said, "indistinguishable")


@dataclass(frozen=True)
class PerClassComparison:
    study: str
    all_class_trial: int
    rows: list[ClassRow]
    confidence: float
    summary: str

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for row, r in zip(out["rows"], self.rows):
            row["verdict"] = r.verdict
            row["difference"] = r.difference and r.difference.score.to_dict()
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def text(self) -> str:
        width = max([len(r.cls) for r in self.rows] + [5])
        lines = [self.summary, "",
                 f"All-class recommended setting: trial {self.all_class_trial} of study {self.study!r}.",
                 f"{'class'.ljust(width)}  {'per-class':>9}  {'held-out':>8}  {'all-class':>9}  "
                 f"{'difference [' + format(self.confidence, '.0%') + ' interval]':<34}  verdict"]
        for r in self.rows:
            d = r.difference
            diff = "-" if d is None else f"{d.score.difference:+.3f} [{d.score.low:+.3f}, {d.score.high:+.3f}]"
            lines.append(f"{r.cls.ljust(width)}  {'trial ' + str(r.per_class_trial):>9}  {r.holdout_samples:>8}  "
                         f"{r.per_class_score:>9.3f}  {diff:<34}  {r.verdict}")
        lines.append("(scores: each class study's normalization, 1 = its best; per-class column: the class "
                     "study's recommended setting, held-out: that class's held-out samples)")
        return "\n".join(lines)


def compare_per_class(base: LoadedStudy | str, *, storage: str | None = None, prefer: Prefer = None,
                      device: str | None = None, resamples: int = 2000, confidence: float = 0.95, seed: int = 0,
                      evaluator_for: Callable[[LoadedStudy], HoldoutEvaluator] | None = None,
                      store: bool = True) -> PerClassComparison:
    """Compare every per-class study's recommended setting with the all-class one (see the module docstring).

    ``evaluator_for`` builds a held-out evaluator for a class study (default: the study's own worker
    code, :func:`xaiopt.study.holdout.holdout_evaluator`).
    """
    base = base if isinstance(base, LoadedStudy) else load_study(base, storage=storage)
    names = class_studies(base)
    if not names:
        raise StudyError(f"study {base.study.study_name!r} has no per-class studies in this storage (make them with "
                         f"`xaiopt study create CONFIG --per-class`)")
    if evaluator_for is None:
        from xaiopt.study.holdout import holdout_evaluator

        def evaluator_for(loaded: LoadedStudy) -> HoldoutEvaluator:
            return holdout_evaluator(loaded, device=device)

    overall = recommend(base, prefer=prefer, top=1, resamples=resamples, confidence=confidence, seed=seed)
    all_trial = base.study.trials[overall.best.number]
    rows = []
    for name in names:
        loaded = load_study(name, storage=base.storage_url)
        rec = recommend(loaded, prefer=prefer, top=1, resamples=resamples, confidence=confidence, seed=seed)
        own = loaded.study.trials[rec.best.number]
        scorer = study_scorer(loaded, prefer)
        evaluate = evaluator_for(loaded)
        metrics = loaded.metric_names
        a = {m: np.asarray(v, dtype=np.float64) for m, v in evaluate(spec_dict(own)).items()}
        same = spec_dict(own) == spec_dict(all_trial)
        b = a if same else {m: np.asarray(v, dtype=np.float64) for m, v in evaluate(spec_dict(all_trial)).items()}
        mean_a = np.array([a[m].mean() for m in metrics])
        mean_b = np.array([b[m].mean() for m in metrics])
        diff = None if same else paired_bootstrap(a, b, scorer, observed_a=mean_a, observed_b=mean_b,
                                                  resamples=resamples, confidence=confidence, seed=seed)
        rows.append(ClassRow(
            cls=str(loaded.study.user_attrs.get(CLASS_ATTR, name)), study=name, per_class_trial=own.number,
            per_class_label=explainer_text(own), all_class_trial=all_trial.number,
            all_class_label=explainer_text(all_trial), same_setting=same, holdout_samples=len(a[metrics[0]]),
            per_class_score=float(scorer.score(mean_a)), all_class_score=float(scorer.score(mean_b)),
            difference=diff,
        ))
    better = [r.cls for r in rows if r.verdict == "per-class better"]
    worse = [r.cls for r in rows if r.verdict == "all-class better"]
    if better:
        summary = (f"A per-class setting is distinguishably better than the all-class setting on the held-out "
                   f"samples of {len(better)} of {len(rows)} classes: {', '.join(better)}; keep those, use the "
                   f"all-class setting (trial {all_trial.number}) for the rest.")
    else:
        summary = (f"For none of the {len(rows)} classes is a per-class setting distinguishably better than the "
                   f"all-class setting (trial {all_trial.number}) on its held-out samples: use the all-class "
                   f"setting.")
    if worse:
        summary += f" The all-class setting is even distinguishably better for {', '.join(worse)}."
    result = PerClassComparison(study=base.study.study_name, all_class_trial=all_trial.number, rows=rows,
                                confidence=confidence, summary=summary)
    if store:
        base.study.set_user_attr(COMPARISON_ATTR, result.to_dict())
    return result
