"""``tpe-decision``: a single-objective TPE on the study's decision score, the study still multi-objective.

The study's target is one setting: the one ``xaiopt study recommend`` picks by its weighted score
(:class:`xaiopt.metrics.scoring.Scorer`: each metric min-max normalized over the study's distinct
complete settings, averaged per category, categories weighted by ``decision.prefer``).
:class:`DecisionTPESampler` searches for that setting directly. It wraps an Optuna
:class:`~optuna.samplers.TPESampler` that optimizes one value (maximize) and hands it a view of
the study (:class:`DecisionView`) in which each complete trial's values are replaced by that
trial's weighted score, under a Scorer fitted on every complete trial so far and, in a racing study,
the pruned settings at their stage means (refitted whenever a trial completes or is pruned, as
``recommend`` normalizes over the settings the study explored). The study itself is left
multi-objective: every trial stores every metric, so the Pareto front, the report and
``recommend`` work unchanged.

Example::

    decision = Decision.from_config(cfg)      # the metrics, their directions and categories, decision.prefer
    sampler = DecisionTPESampler(decision, seed=0, multivariate=True, group=True, n_startup_trials=8)
    study = optuna.create_study(directions=list(decision.directions), sampler=sampler)
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Container, Mapping, Sequence, cast

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, TPESampler
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from xaiopt.errors import ConfigError
from xaiopt.metrics.preferences import category_weights
from xaiopt.metrics.scoring import Scorer
from xaiopt.objective.attrs import distinct_settings, explored_means

if TYPE_CHECKING:
    from xaiopt.config import StudyConfig

_DIRECTIONS = ("maximize", "minimize")


@dataclass(frozen=True)
class Decision:
    """What the study's recommendation ranks by: its metrics (in the study's order), their directions
    and categories, and the weight of each category (all categories present, as
    :func:`xaiopt.metrics.preferences.category_weights` returns them)."""

    metrics: tuple[str, ...]
    directions: tuple[str, ...]
    categories: tuple[str, ...]
    weights: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", tuple(self.metrics))
        object.__setattr__(self, "directions", tuple(self.directions))
        object.__setattr__(self, "categories", tuple(self.categories))
        object.__setattr__(self, "weights", {str(k): float(v) for k, v in self.weights.items()})
        n = len(self.metrics)
        if n == 0 or len(self.directions) != n or len(self.categories) != n:
            raise ConfigError(f"decision: {n} metrics, {len(self.directions)} directions and "
                              f"{len(self.categories)} categories; give one direction and one category per metric")
        bad = [d for d in self.directions if d not in _DIRECTIONS]
        if bad:
            raise ConfigError(f"decision: direction {bad[0]!r} (valid: {', '.join(_DIRECTIONS)})")
        missing = [c for c in dict.fromkeys(self.categories) if c not in self.weights]
        if missing:
            raise ConfigError(f"decision: no weight for category {missing[0]!r} (weights given: "
                              f"{', '.join(self.weights) or 'none'})")
        if not any(self.weights[c] > 0 for c in set(self.categories)):
            raise ConfigError("decision: every category of the study weighs 0; at least one must be positive")

    @classmethod
    def of(cls, metrics: Sequence[str], directions: Sequence[str], categories: Sequence[str],
           prefer: Any = None, *, what: str = "decision.prefer") -> "Decision":
        """The decision with category weights from ``prefer`` (``--prefer`` text or a mapping; None: equal)."""
        present = list(dict.fromkeys(categories))
        return cls(tuple(metrics), tuple(directions), tuple(categories),
                   category_weights(prefer, present=present, what=what))

    @classmethod
    def from_config(cls, cfg: "StudyConfig") -> "Decision":
        """The decision of a study config: its metrics (directions from their parameters, categories from
        the metric registry) and ``decision.prefer`` (equal weights when empty)."""
        from xaiopt.objective.trial import metric_plan

        plan = metric_plan(cfg)
        prefer = dict(cfg.decision.prefer) or None
        return cls.of([name for name, _, _ in plan], [info.direction_for(params) for _, info, params in plan],
                      [info.category for _, info, _ in plan], prefer)

    def fit(self, values: np.ndarray) -> Scorer:
        """The Scorer ``recommend`` would rank with, normalized over ``values`` ((T, M), one row per setting)."""
        return Scorer.fit(values, metrics=self.metrics, directions=self.directions, categories=self.categories,
                          weights=dict(self.weights))


def _setting_key(t: FrozenTrial) -> str:
    return json.dumps(sorted((k, repr(v)) for k, v in t.params.items()))


def decision_scores(decision: Decision, complete: Sequence[FrozenTrial],
                    explored: Sequence[Sequence[float]] = ()) -> dict[int, float]:
    """Trial number -> the weighted score of its metric vector under a Scorer fitted on the distinct
    settings among ``complete`` (as ``recommend`` fits it: :func:`distinct_settings`, then one trial
    per parameter set for trials that recorded no explainer), and on ``explored``: the stage means of
    the settings racing pruned (:func:`xaiopt.objective.attrs.explored_means`), as ``recommend``
    adds them. A trial with a non-finite value scores -inf; rows with one are left out of the fit."""
    if not complete:
        return {}
    kept, _ = distinct_settings(list(complete))
    reps = list({_setting_key(t): t for t in reversed(kept)}.values())  # the earliest trial per parameter set
    n = len(decision.metrics)
    for t in complete:
        if t.values is None or len(t.values) != n:
            got = "no values" if t.values is None else f"{len(t.values)} values"
            raise ConfigError(f"sampler: tpe-decision was built for {n} metrics ({', '.join(decision.metrics)}) "
                              f"but trial {t.number} has {got}; build it from this study's config")
    fit_rows = np.array([t.values for t in reps] + [list(r) for r in explored], dtype=np.float64)
    fit_rows = fit_rows[np.isfinite(fit_rows).all(axis=1)]
    values = np.array([t.values for t in complete], dtype=np.float64)
    if len(fit_rows) == 0:
        return {t.number: float("-inf") for t in complete}
    scores = decision.fit(fit_rows).score(values)
    scores = np.where(np.isfinite(values).all(axis=1) & np.isfinite(scores), scores, -np.inf)
    return {t.number: float(s) for t, s in zip(complete, scores)}


class DecisionView:
    """A read-only view of a multi-objective study as the single-objective study of its decision score.

    What a :class:`~optuna.samplers.TPESampler` reads of a study is answered here: ``directions`` and
    ``direction`` (one, maximize), ``_is_multi_objective()`` (False), ``_get_trials`` /
    ``get_trials`` / ``trials`` (each complete trial a copy whose ``values`` are ``[its weighted
    score]``; a pruned trial without its intermediate values, which are not on the score's scale).
    Everything else (``_study_id``, ``_storage``, ``study_name``, ...) is the study's own, so
    relative parameters and system attrs the sampler writes land in the real trials."""

    def __init__(self, study: optuna.Study, sampler: "DecisionTPESampler") -> None:
        self._study = study
        self._sampler = sampler

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    @property
    def directions(self) -> list[StudyDirection]:
        return [StudyDirection.MAXIMIZE]

    @property
    def direction(self) -> StudyDirection:
        return StudyDirection.MAXIMIZE

    def _is_multi_objective(self) -> bool:
        return False

    def _get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None,
                    use_cache: bool = False) -> list[FrozenTrial]:
        trials = self._study._get_trials(deepcopy=False, states=states, use_cache=use_cache)
        out = self._sampler._rescored(self._study, trials)
        return copy.deepcopy(out) if deepcopy else out

    def get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        return self._get_trials(deepcopy=deepcopy, states=states, use_cache=False)

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()


class DecisionTPESampler(BaseSampler):
    """Single-objective TPE on the decision score of a multi-objective study (see the module).

    ``tpe_kwargs`` are :class:`~optuna.samplers.TPESampler`'s keyword arguments (``multivariate``,
    ``group``, ``n_startup_trials``, ``constant_liar``, ...)."""

    def __init__(self, decision: Decision, *, seed: int | None = None, **tpe_kwargs: Any) -> None:
        self.decision = decision
        self.inner = TPESampler(seed=seed, **tpe_kwargs)
        # the rescored copies of the complete trials, valid while the set of complete trials is the same
        self._cache_key: tuple | None = None
        self._cache: dict[int, FrozenTrial] = {}

    def view(self, study: optuna.Study) -> optuna.Study:
        """The study as the inner TPE sees it (:class:`DecisionView`)."""
        directions = [d.name.lower() for d in study.directions]
        if directions != list(self.decision.directions):
            raise ConfigError(f"sampler: tpe-decision was built for the directions {list(self.decision.directions)} "
                              f"of {', '.join(self.decision.metrics)}, the study has {directions}; "
                              f"build it from this study's config")
        return cast(optuna.Study, DecisionView(study, self))

    def _rescored(self, study: optuna.Study, trials: list[FrozenTrial]) -> list[FrozenTrial]:
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if complete:
            # a query that returns any complete trial returns them all (Optuna filters by state only)
            pruned = study._get_trials(deepcopy=False, states=(TrialState.PRUNED,), use_cache=True)
            explored = explored_means(pruned, list(self.decision.metrics))
            key = (study._study_id, tuple(t.number for t in complete), len(explored))
            if key != self._cache_key:
                scores = decision_scores(self.decision, complete, explored)
                self._cache = {}
                for t in complete:
                    c = copy.copy(t)
                    c.values = [scores[t.number]]
                    self._cache[t.number] = c
                self._cache_key = key
        out = []
        for t in trials:
            if t.state == TrialState.COMPLETE:
                t = self._cache[t.number]
            elif t.state == TrialState.PRUNED and t.intermediate_values:
                t = copy.copy(t)
                t.intermediate_values = {}
            out.append(t)
        return out

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.inner.infer_relative_search_space(self.view(study), trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self.inner.sample_relative(self.view(study), trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self.inner.sample_independent(self.view(study), trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.inner.before_trial(self.view(study), trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        # the trial's own score, normalized over the complete trials and this one (the inner TPE reads
        # no values here; constraints, if any, are written to the real trial through the view's storage)
        score = None
        if state == TrialState.COMPLETE and values is not None:
            done = [t for t in study._get_trials(deepcopy=False, states=(TrialState.COMPLETE,), use_cache=False)
                    if t.number != trial.number]
            now = copy.copy(trial)
            now.values = list(values)
            now.state = TrialState.COMPLETE
            score = [decision_scores(self.decision, [*done, now])[trial.number]]
        self.inner.after_trial(self.view(study), trial, state, score)
