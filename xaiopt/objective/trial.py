"""The per-trial evaluation: suggest -> explain -> metric vector."""

from __future__ import annotations

import logging
import math
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial, TrialState

from xaiopt.config import StudyConfig
from xaiopt.errors import ConfigError, TrialFailed, XaioptError
from xaiopt.metrics import MetricContext, get_metric
from xaiopt.metrics.batching import images_per_pass
from xaiopt.metrics.context import call_explain
from xaiopt.metrics.packing import pack_scores
from xaiopt.metrics.preferences import category_weights
from xaiopt.objective.artifacts import upload_png
from xaiopt.objective.attrs import (
    DUPLICATE_OF,
    EXPLAINER,
    FAIL_REASON,
    FIDELITY_ATTR,
    HEATMAP_ATTR,
    PER_SAMPLE_KEY,
    PRUNED,
    PRUNED_AS,
    SECONDS,
    SECONDS_ATTR,
    SPEC_ATTR,
    baseline,
    distinct_settings,
    explainer_text,
    explored_means,
    heatmap_artifact,
    per_sample,
    spec_dict,
)
from xaiopt.objective.benchmark import Benchmark, get_benchmark
from xaiopt.objective.explain import explainer_for
from xaiopt.objective.fidelity import first_loss, incumbent
from xaiopt.objective.heatmaps import save_heatmap_grid, target_labels
from xaiopt.objective.model_faults import describe_exception
from xaiopt.space import ExplainerSpec, SearchSpace

log = logging.getLogger(__name__)

# trial user attr: why a completed trial has no heatmap artifact (a disk fault, never a lost trial)
HEATMAP_ERROR = "heatmap_error"

# trial system attr holding every metric's per-sample scores (xaiopt.metrics.packing); a system
# attr rather than a user attr: it lives in the same database row set (readable by any process
# holding the storage URL, PostgreSQL with many workers included) but is no column of
# optuna-dashboard's trial table, whose width it would blow up (docs/recommendation.md)
PER_SAMPLE_ATTR = PER_SAMPLE_KEY


def metric_plan(cfg: StudyConfig) -> list[tuple[str, Any, dict[str, Any]]]:
    """(name, MetricInfo, validated params) per configured metric; raises on unknown names/params."""
    plan = []
    for m in cfg.metrics:
        info = get_metric(m.name)
        plan.append((m.name, info, info.validate_params(m.params)))
    return plan


def metric_directions(cfg: StudyConfig) -> list[str]:
    return [info.direction_for(params) for _, info, params in metric_plan(cfg)]


def means(scores: dict[str, torch.Tensor]) -> dict[str, float]:
    """The metric vector: the float64 mean of each metric's per-sample float32 scores."""
    return {name: float(s.double().mean()) for name, s in scores.items()}


class _OneLinePerFailure(logging.Filter):
    """Optuna logs a failed trial as two warnings, the first with the traceback of the exception. A
    trial failed by :class:`TrialFailed` has said why in one line already (and records it in its
    ``fail_reason``): Optuna's two are dropped for it, and only for it."""

    _FAILED = re.compile(r"Trial (\d+) failed with ")

    def __init__(self) -> None:
        super().__init__()
        self._said: set[int] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        found = self._FAILED.match(str(record.msg))
        if found is None:
            return True
        number = int(found[1])
        if record.exc_info and isinstance(record.exc_info[1], TrialFailed):
            self._said.add(number)
            return False
        if number in self._said and str(record.msg).startswith(f"Trial {number} failed with value"):
            self._said.discard(number)
            return False
        return True


_ONE_LINE_PER_FAILURE = _OneLinePerFailure()


def _quiet_optuna_failures() -> None:
    logger = logging.getLogger("optuna.study._optimize")
    if _ONE_LINE_PER_FAILURE not in logger.filters:
        logger.addFilter(_ONE_LINE_PER_FAILURE)


def _set_system_attr(trial: optuna.Trial, key: str, value: Any) -> None:
    # Optuna has no public Trial.set_system_attr; the storage method is what its own
    # terminator.report_cross_validation_scores and artifacts use for per-trial data
    storage = getattr(trial, "storage", None)
    if storage is not None:
        storage.set_trial_system_attr(trial._trial_id, key, value)


def _metric_scores(ctx: MetricContext, plan: list[tuple[str, Any, dict[str, Any]]], stage: "_Stage",
                   seconds: dict[str, float]) -> dict[str, torch.Tensor]:
    """Each metric's (N,) scores on ``ctx``, timed into ``seconds``; NaN/inf fails the evaluation."""
    per_sample: dict[str, torch.Tensor] = {}
    for name, info, params in plan:
        stage.name = f"metric {name}"
        t = time.perf_counter()
        scores = info(ctx, **params)
        seconds[f"metric:{name}"] = time.perf_counter() - t
        finite = torch.isfinite(scores)
        if not finite.all():
            raise TrialFailed(f"metric {name} is NaN/inf for {int((~finite).sum())} of {len(scores)} samples")
        per_sample[name] = scores
    return per_sample


class _Stage:
    """Where a trial's evaluation is (for the reason of a trial that fails there)."""

    name = "attribution"


class Objective:
    """An Optuna objective for one study config; callable with a trial, returns the metric vector.

    Example::

        objective = Objective(cfg, device=torch.device("cpu"))
        study.optimize(objective, n_trials=10, catch=(TrialFailed,))
    """

    def __init__(self, cfg: StudyConfig, *, device: torch.device,
                 artifact_store: optuna.artifacts.FileSystemArtifactStore | None = None, subset: str = "search"):
        self.cfg = cfg
        self.device = device
        self.plan = metric_plan(cfg)
        # trials score the search samples only; ``holdout`` is for validating a choice (study validate)
        self.bench: Benchmark = get_benchmark(cfg, device, subset)
        self.space = SearchSpace(cfg.space, self.bench.layers, grid=cfg.sampler.name == "grid")
        self.artifact_store = artifact_store
        self._artifact_warned = False
        _quiet_optuna_failures()
        self.directions = {name: info.direction_for(params) for name, info, params in self.plan}
        fidelity = cfg.fidelity
        # the samples scored after each racing stage, on this study's data
        self.stages: list[int] = []
        if fidelity is not None:
            try:
                self.stages = fidelity.stage_samples(len(self.bench.x))
            except ValueError as err:
                raise ConfigError(f"{err} of this study's data (or no fidelity section)") from None
        # the decision racing ranks by: the recommendation's category weights of this study
        self.categories = [info.category for _, info, _ in self.plan]
        self.weights = category_weights(dict(cfg.decision.prefer) or None,
                                        present=list(dict.fromkeys(self.categories)), what="decision.prefer")

    def evaluate(self, spec: ExplainerSpec) -> tuple[dict[str, float], dict[str, float], torch.Tensor]:
        """Metric vector and timings of one explainer; raises :class:`TrialFailed` on NaN/inf or a model error."""
        scores, seconds, attributions = self.evaluate_per_sample(spec)
        return means(scores), seconds, attributions

    def evaluate_per_sample(self, spec: ExplainerSpec, *, first: int | None = None, draws: int | None = None,
                            start: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, float], torch.Tensor]:
        """Each metric's (N,) float32 scores, timings and attributions of one explainer.

        The trial's metric vector is :func:`means` of these scores. Raises :class:`TrialFailed` on NaN/inf,
        and when the model, the explainer or a metric raises: the reason names the exception, where
        in the model's code it came from and the stage (``during attribution``, ``during metric
        pixel_flipping``). xaiopt's own :class:`XaioptError` (a user's mistake), KeyboardInterrupt
        and SystemExit pass unchanged. ``start``, ``first``: only the samples ``start`` to ``first``
        (exclusive; a multi-fidelity stage), with ``draws`` noise draws for the metrics that have an
        ``nr_samples`` parameter (None: their own).
        """
        stage = _Stage()
        try:
            return self._evaluate_per_sample(spec, first=first, draws=draws, start=start, stage=stage)
        except (TrialFailed, XaioptError):
            raise
        except Exception as err:
            bench = self.bench
            models = [bench.model] + ([bench.twin] if bench.twin is not None else [])
            reason = f"{describe_exception(err, models=models)} during {stage.name}"
            # the whole traceback is for whoever debugs the model (-v); the trial keeps the one line
            log.info("trial evaluation raised during %s", stage.name, exc_info=err)
            raise TrialFailed(reason) from err

    def _evaluate_per_sample(self, spec: ExplainerSpec, *, first: int | None, draws: int | None, start: int,
                             stage: _Stage) -> tuple[dict[str, torch.Tensor], dict[str, float], torch.Tensor]:
        bench = self.bench
        x, y, masks, logits, plan = bench.x, bench.y, bench.masks, bench.logits, self.plan
        fixed = bench.fixed
        if first is not None or start:
            part = slice(start, first)
            x, y, logits = x[part], y[part], logits[part]
            fixed = tuple(f[part] for f in fixed)
            masks = None if masks is None else masks[part]
            if draws is not None:
                plan = [(name, info, {**params, "nr_samples": draws} if "nr_samples" in params else params)
                        for name, info, params in plan]
        budget = self.cfg.runtime.batch_budget
        model, layers = bench.model_for(spec.canonize)
        # the trial's own attribution is chunked by the same rule as the metrics' passes
        per_pass = images_per_pass(model, x, budget=budget, images=len(x), cache=bench.cache, fixed=fixed)
        seconds: dict[str, float] = {}
        runtime = self.cfg.runtime
        # the engine keeps the forwards of the study's fixed inputs (batch, noise draws) across trials
        with explainer_for(spec, model, layers, low=bench.low, high=bench.high, batch_budget=per_pass,
                           engine=runtime.engine, lrp_cache_mb=runtime.lrp_cache_mb) as explain:
            t = time.perf_counter()
            # a model of the image alone is called as it always was (an explain function may take two arguments)
            attributions = call_explain(explain, x, y, fixed=fixed)
            seconds["attribution"] = time.perf_counter() - t
            if not torch.isfinite(attributions).all():
                bad = int((~torch.isfinite(attributions)).flatten(1).any(1).sum())
                raise TrialFailed(f"attributions are NaN/inf for {bad} of {len(attributions)} samples")

            def explain_with(other: torch.nn.Module, x: torch.Tensor, targets: torch.Tensor,
                             fixed: tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
                # a randomized copy is new every time: nothing of its forward is ever reused
                with explainer_for(spec, other, layers, low=bench.low, high=bench.high,
                                   batch_budget=budget, engine=runtime.engine, lrp_cache_mb=0) as other_explain:
                    return call_explain(other_explain, x, targets, fixed=fixed)

            ctx = MetricContext(
                model=model, x=x, y=y, masks=masks, logits=logits,
                attributions=attributions, explain=explain, seed=self.cfg.seed, cache=bench.cache,
                batch_budget=budget, explain_with=explain_with, score_cache_mb=runtime.score_cache_mb,
                fixed=fixed,
            )
            # the metrics see the model the explainer is registered on (the twin for canonized
            # specs): the same function, and mprt randomises the very layers the rules sit on
            per_sample = _metric_scores(ctx, plan, stage, seconds)
        return per_sample, seconds, attributions

    def evaluate_reference(self, name: str) -> tuple[dict[str, torch.Tensor], float]:
        """Each metric's (N,) scores of reference explanation ``name`` (:mod:`xaiopt.objective.references`)
        on the plain model and the study's search samples, and the seconds it took; the metrics score it
        as they score a trial (randomization re-explains a randomized model with the same reference).
        Raises :class:`TrialFailed` as :meth:`evaluate_per_sample` does."""
        from xaiopt.objective.references import reference_explainer

        bench, budget, runtime = self.bench, self.cfg.runtime.batch_budget, self.cfg.runtime
        model, _ = bench.model_for(False)
        stage = _Stage()
        t0 = time.perf_counter()
        try:
            explain = reference_explainer(name, model, seed=self.cfg.seed, batch_budget=budget)
            attributions = call_explain(explain, bench.x, bench.y, fixed=bench.fixed)

            def explain_with(other: torch.nn.Module, x: torch.Tensor, targets: torch.Tensor,
                             fixed: tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
                return reference_explainer(name, other, seed=self.cfg.seed, batch_budget=budget)(x, targets, fixed)

            ctx = MetricContext(
                model=model, x=bench.x, y=bench.y, masks=bench.masks, logits=bench.logits,
                attributions=attributions, explain=explain, seed=self.cfg.seed, cache=bench.cache,
                batch_budget=budget, explain_with=explain_with, score_cache_mb=runtime.score_cache_mb,
                fixed=bench.fixed,
            )
            per_sample = _metric_scores(ctx, self.plan, stage, {})
        except (TrialFailed, XaioptError):
            raise
        except Exception as err:
            raise TrialFailed(f"{describe_exception(err, models=[model])} during {stage.name} of the "
                              f"{name} reference") from err
        return per_sample, time.perf_counter() - t0

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...]:
        t0 = time.perf_counter()
        spec = self.space.suggest(trial)
        # flat, short user attrs (one dashboard column each); the full record in system attrs
        _set_system_attr(trial, SPEC_ATTR, spec.to_dict())
        trial.set_user_attr(EXPLAINER, spec.describe())
        earlier = self._same_explainer_done(trial, spec)
        if earlier is not None:
            # the metric vector is a deterministic function of the spec (fixed seed, fixed noise):
            # a sampler proposing a finished point again gets its values without recomputation
            trial.set_user_attr(DUPLICATE_OF, earlier.number)
            trial.set_user_attr(SECONDS, round(time.perf_counter() - t0, 4))
            if heatmap_artifact(earlier) is not None:
                self._artifact_safely(trial, self._copy_heatmaps, trial, earlier)
            # copied, not pointed to: every complete trial carries the samples behind its values
            if PER_SAMPLE_ATTR in earlier.system_attrs:
                _set_system_attr(trial, PER_SAMPLE_ATTR, earlier.system_attrs[PER_SAMPLE_ATTR])
            return tuple(earlier.values)
        # multi-fidelity's two stages; a named baseline is the reference the report compares with,
        # always evaluated in full
        staged = self.cfg.fidelity is not None and baseline(trial) is None
        if staged:
            self._prune_if_pruned_before(trial, spec, t0)
        try:
            subset_seconds = self._subset_stage(trial, spec, t0) if staged else None
            scores, seconds, attributions = self.evaluate_per_sample(spec)
        except TrialFailed as err:
            trial.set_user_attr(FAIL_REASON, str(err))
            log.warning("trial %d failed: %s", trial.number, err)
            raise
        values = means(scores)
        _set_system_attr(trial, PER_SAMPLE_ATTR, pack_scores(scores))
        if subset_seconds is not None:
            seconds["fidelity_subset"] = subset_seconds
        self._record_seconds(trial, seconds, t0)
        if self.artifact_store is not None and self.cfg.runtime.heatmaps > 0:
            self._artifact_safely(trial, self._upload_heatmaps, trial, attributions[: self.cfg.runtime.heatmaps])
        out = tuple(values[name] for name, _, _ in self.plan)
        assert all(math.isfinite(v) for v in out)
        return out

    def _record_seconds(self, trial: optuna.Trial, seconds: dict[str, float], t0: float) -> None:
        """The trial's time per phase (system attr), its total since ``t0`` (user attr) and its device."""
        seconds["total"] = time.perf_counter() - t0
        _set_system_attr(trial, SECONDS_ATTR, {k: round(v, 4) for k, v in seconds.items()})
        trial.set_user_attr(SECONDS, round(seconds["total"], 4))
        trial.set_user_attr("device", str(self.device))

    def _subset_stage(self, trial: optuna.Trial, spec: ExplainerSpec, t0: float) -> float | None:
        """Multi-fidelity: score ``spec`` stage by stage (samples 0 to ``fidelity.stages[0]``, then on
        to ``stages[1]``, ...) and raise :class:`optuna.TrialPruned` after the first stage it loses by
        ``fidelity.rule`` (:func:`xaiopt.objective.fidelity.racing_loss`, or
        :func:`~xaiopt.objective.fidelity.dominating`); the seconds the stages took, None when
        skipped (nothing to race against yet)."""
        fidelity = self.cfg.fidelity
        assert fidelity is not None
        t = time.perf_counter()
        complete = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        completed = []
        for done in distinct_settings(complete)[0]:
            try:
                scores = per_sample(done)
            except ValueError:  # a malformed record is no evidence; the reading commands report it
                continue
            if scores is not None and done.values is not None:
                completed.append((done.number, done.values, scores))
        names = list(self.directions)
        inc = None
        if fidelity.rule == "decision":
            pruned = trial.study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
            inc = incumbent(completed, metrics=names, directions=list(self.directions.values()),
                            categories=self.categories, weights=self.weights,
                            explored=explored_means(pruned, names))
            if inc is None:
                return None
        elif not completed:
            return None

        def parts() -> Iterator[dict[str, np.ndarray]]:  # each stage's samples, evaluated when asked for
            for start, stop in zip([0, *self.stages], self.stages):
                part, _, _ = self.evaluate_per_sample(spec, start=start, first=stop, draws=fidelity.draws)
                yield {m: s.double().cpu().numpy() for m, s in part.items()}

        found, so_far = first_loss(parts(), metrics=names, z=fidelity.z, inc=inc,
                                   completed=[(n, s) for n, _, s in completed], directions=self.directions)
        if found is None:
            return time.perf_counter() - t
        reason = found.reason()
        trial.set_user_attr(PRUNED, reason)
        # the stage means: where the setting lies, for the range the decision normalizes over
        means = {m: float(so_far[m].mean()) for m in names}
        _set_system_attr(trial, FIDELITY_ATTR, {**found.to_dict(), "means": means})
        self._record_seconds(trial, {"fidelity_subset": time.perf_counter() - t}, t0)
        log.info("trial %d pruned: %s", trial.number, reason)
        raise optuna.TrialPruned(reason)

    def _prune_if_pruned_before(self, trial: optuna.Trial, spec: ExplainerSpec, t0: float) -> None:
        """A setting multi-fidelity pruned before is pruned again without a model pass: its subset
        scores are a deterministic function of the setting, and the trial that dominated it is still
        complete."""
        for t in self._same_setting(trial, spec, TrialState.PRUNED):
            if PRUNED in t.user_attrs and FIDELITY_ATTR in t.system_attrs:
                first = int(t.user_attrs.get(PRUNED_AS, t.number))
                reason = (t.user_attrs[PRUNED] if PRUNED_AS in t.user_attrs
                          else f"same setting as trial {first}, which was {t.user_attrs[PRUNED]}")
                trial.set_user_attr(PRUNED, reason)
                trial.set_user_attr(PRUNED_AS, first)
                _set_system_attr(trial, FIDELITY_ATTR, t.system_attrs[FIDELITY_ATTR])
                trial.set_user_attr(SECONDS, round(time.perf_counter() - t0, 4))
                log.info("trial %d pruned: %s", trial.number, reason)
                raise optuna.TrialPruned(reason)

    @staticmethod
    def _same_setting(trial: optuna.Trial, spec: ExplainerSpec, state: TrialState) -> Iterator[FrozenTrial]:
        """The study's trials in ``state`` that ran ``spec``, oldest first."""
        wanted = spec.to_dict()
        return (t for t in trial.study.get_trials(deepcopy=False, states=(state,)) if spec_dict(t) == wanted)

    @classmethod
    def _same_explainer_done(cls, trial: optuna.Trial, spec: ExplainerSpec) -> FrozenTrial | None:
        return next((t for t in cls._same_setting(trial, spec, TrialState.COMPLETE) if t.values is not None), None)

    def heatmap_captions(self, k: int) -> list[str]:
        """The label under each of the first ``k`` heatmaps: the explained class, label or prediction."""
        bench = self.bench
        # dataset class names name the model's outputs when they are the targets, or when the
        # model has exactly the dataset's classes; a prediction of another model stays a number
        names = bench.class_names if bench.target == "label" or len(bench.class_names) == bench.num_classes else ()
        return target_labels(bench.y[:k].tolist(), class_names=names, kind=bench.target,
                             predicted=bench.logits[:k].argmax(1).tolist())

    def _artifact_safely(self, trial: optuna.Trial, write: Any, *args: Any) -> None:
        """A heatmap the disk cannot take (full, read-only, removed) fails the heatmap, not the trial:
        the trial keeps its values and says why it has no artifact; the worker warns once."""
        try:
            write(*args)
        except OSError as err:
            reason = f"{type(err).__name__}: {err.strerror or err}" + (f" ({err.filename})" if err.filename else "")
            trial.set_user_attr(HEATMAP_ERROR, f"no heatmap artifact: {reason}"[:200])
            if not self._artifact_warned:
                self._artifact_warned = True
                log.warning("heatmap artifacts cannot be written (%s); trials go on without them (said once per "
                            "worker; each such trial records why in its user attr %r)", reason, HEATMAP_ERROR)

    def _upload_heatmaps(self, trial: optuna.Trial, attributions: torch.Tensor) -> None:
        name = baseline(trial)
        title = f"trial {trial.number}" + (f" [baseline {name}]" if name else "") + f": {explainer_text(trial)}"
        with tempfile.TemporaryDirectory() as tmp:
            k = len(attributions)
            path = save_heatmap_grid(attributions, Path(tmp) / f"heatmaps-trial{trial.number}.png",
                                     images=self.bench.x[:k], low=self.bench.low, high=self.bench.high,
                                     title=title, labels=self.heatmap_captions(k))
            artifact_id = upload_png(self.artifact_store, trial, path)
        _set_system_attr(trial, HEATMAP_ATTR, artifact_id)

    def _copy_heatmaps(self, trial: optuna.Trial, earlier: FrozenTrial) -> None:
        """A repeat of a finished setting shows its original's heatmap PNG as an artifact of its own
        (optuna-dashboard lists artifacts per trial); without a store, or when the file is not in
        this worker's, the repeat points to the original's artifact id."""
        original = heatmap_artifact(earlier)
        if self.artifact_store is not None:
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / f"heatmaps-trial{trial.number}-same-as-trial{earlier.number}.png"
                    reader = self.artifact_store.open_reader(original)
                    try:
                        with path.open("wb") as out:
                            shutil.copyfileobj(reader, out)
                    finally:
                        reader.close()
                    original = upload_png(self.artifact_store, trial, path)
            except ArtifactNotFound:
                log.warning("trial %d repeats trial %d, whose heatmap artifact %s is not in this worker's store",
                            trial.number, earlier.number, original)
        _set_system_attr(trial, HEATMAP_ATTR, original)
