"""Creating, loading, listing and deleting studies.

A study is a plain Optuna study: the validated config is stored as a study user attr, so a
worker needs only the storage URL and the study name, and ``optuna.load_study`` or
optuna-dashboard open it unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shlex
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import optuna

from xaiopt import __version__
from xaiopt.config import StudyConfig, config_to_dict, parse_config
from xaiopt.errors import ConfigError, StudyError, StudyExistsError
from xaiopt.study.presence import deleting, study_exists
from xaiopt.study.storage import (
    _redact,
    creating_study,
    default_storage_url,
    is_sqlite,
    open_storage,
    sqlite_path,
)

CONFIG_ATTR = "xaiopt:config"
VERSION_ATTR = "xaiopt:version"
ARTIFACTS_ATTR = "xaiopt:artifact_dir"
GROUPS_ATTR = "xaiopt:layer_groups"
BOUNDS_ATTR = "xaiopt:input_bounds"
FIRST_ATTR = "xaiopt:first_layer"
# the canonized twin's module names: canonize: true trials put their rules on these (they equal the
# plain model's for merges in place, and differ where canonization adds or renames layers)
TWIN_GROUPS_ATTR = "xaiopt:twin_layer_groups"
TWIN_FIRST_ATTR = "xaiopt:twin_first_layer"
EVAL_ATTR = "xaiopt:evaluation_batch"
SPLIT_ATTR = "xaiopt:split"
CANON_ATTR = "xaiopt:canonization"
# {metric: category}: read commands weigh categories without importing the metric implementations
CATEGORIES_ATTR = "xaiopt:metric_categories"
# the reference explanations' scores, once per study (xaiopt/study/worker.py, xaiopt/analysis/sanity.py)
REFERENCES_ATTR = "xaiopt:references"


@dataclass
class LoadedStudy:
    """An Optuna study with its xaiopt config."""

    study: optuna.Study
    config: StudyConfig
    storage_url: str

    @property
    def metric_names(self) -> list[str]:
        return [m.name for m in self.config.metrics]

    @functools.cached_property
    def metric_categories(self) -> list[str]:
        """Each metric's category, as recorded at creation (the registry's, for older studies); read from
        the storage once per loaded study (a study's metrics never change)."""
        stored = self.study.user_attrs.get(CATEGORIES_ATTR) or {}
        if any(n not in stored for n in self.metric_names):
            from xaiopt.metrics import get_metric

            stored = {n: stored.get(n) or get_metric(n).category for n in self.metric_names}
        return [stored[n] for n in self.metric_names]

    @property
    def artifact_dir(self) -> Path:
        return Path(self.study.user_attrs[ARTIFACTS_ATTR])


def default_artifact_dir(storage_url: str, study_name: str) -> Path:
    path = sqlite_path(storage_url)
    base = path.parent if path is not None else Path.cwd()
    return (base / "xaiopt-artifacts").resolve()


def preflight(cfg: StudyConfig) -> dict[str, Any]:
    """Check everything that can be checked before the first trial, on the CPU.

    Metric names and parameters, masks for the metrics that need them, the sampler's arguments,
    the layer groups against the real model, the targets against the model's outputs. Returns the
    resolved layer groups, the first layer, the input bounds (for the zennit export) and the
    evaluation batch's accuracy against its targets (:func:`describe_evaluation`).
    """
    import torch

    from xaiopt.metrics import get_metric
    from xaiopt.objective import get_benchmark, metric_plan
    from xaiopt.space import SearchSpace
    from xaiopt.study.metric_choice import check_masks, settle_metrics
    from xaiopt.study.samplers import Decision, check_sampler_params, make_sampler

    metric_plan(cfg)
    check_sampler_params(cfg.sampler)
    cfg, _ = settle_metrics(cfg)  # metrics the data cannot score: refused before the model loads
    bench = get_benchmark(cfg, torch.device("cpu"))
    check_masks(cfg, bench.masks is not None)
    space = SearchSpace(cfg.space, bench.layers, grid=cfg.sampler.name == "grid")
    make_sampler(cfg.sampler, space, seed=cfg.seed, decision=Decision.from_config(cfg))
    for name in cfg.space.overrides:
        if name not in bench.layers.non_empty():
            raise ConfigError(f"space.overrides: layer group {name!r} has no layers in model {cfg.model.name!r}")
    return {
        CATEGORIES_ATTR: {m.name: get_metric(m.name).category for m in cfg.metrics},
        CANON_ATTR: bench.canonization_summary(),
        GROUPS_ATTR: bench.layers.groups,
        FIRST_ATTR: bench.layers.first_layer,
        TWIN_GROUPS_ATTR: None if bench.twin_layers is None else bench.twin_layers.groups,
        TWIN_FIRST_ATTR: None if bench.twin_layers is None else bench.twin_layers.first_layer,
        BOUNDS_ATTR: {"low": bench.low.flatten().tolist(), "high": bench.high.flatten().tolist()},
        EVAL_ATTR: bench.evaluation(),
        # which evaluation samples are searched on and which are held out (data.holdout): every
        # worker recomputes the split from the config and checks it against this record
        SPLIT_ATTR: None if bench.split is None else {**bench.split.to_dict(), "holdout_spec": cfg.data.holdout},
    }


def describe_canonization(summary: dict[str, Any] | None) -> str | None:
    """One warning line when the twin that ``canonize: true`` trials explain is not fully canonized.

    ``summary`` is the study's ``xaiopt:canonization`` user attr (``Benchmark.canonization_summary``).
    """
    if summary is None or summary["canonized"]:
        return None
    return (f"warning: canonize: true trials explain a twin that is not fully canonized ({summary['merges']} "
            f"batch norms merged, {summary['batch_norms_after']} of {summary['batch_norms_before']} still computed, "
            f"measured): {summary['reason']}")


def describe_evaluation(summary: dict[str, Any]) -> tuple[str, str | None]:
    """One line on the evaluation batch and, when its accuracy is at chance level, one warning line.

    ``summary`` is the study's ``xaiopt:evaluation_batch`` user attr (see ``Benchmark.evaluation``).
    Accuracy at chance against the labels means the explained classes are probably not the model's
    (folder indices under an ImageNet model, say): every faithfulness number is then noise.

    Example::

        line, warning = describe_evaluation(loaded.study.user_attrs["xaiopt:evaluation_batch"])
        line   # 'evaluation batch: 32 samples, 8 classes, accuracy 0.91 against labels'
    """
    held = summary.get("held_out", 0)
    head = f"evaluation batch: {summary['samples']} samples, {summary['classes']} classes"
    if held:
        head = (f"evaluation batch: {summary['samples']} search samples ({held} more held out for `xaiopt study "
                f"validate`, never shown to the model during the search), {summary['classes']} classes")
    if summary["target"] == "predicted":
        return (f"{head} (the model's predictions), accuracy 1 by construction (data.target: predicted); "
                f"agreement with the dataset labels {summary['label_accuracy']:.2f}"), None
    line = f"{head}, accuracy {summary['accuracy']:.2f} against labels"
    if not summary["at_chance"]:
        return line, None
    chance = summary["chance"]
    mismatch = ""
    if summary.get("dataset_classes") and summary["dataset_classes"] != summary["model_outputs"]:
        mismatch = (f" (the dataset has {summary['dataset_classes']} classes, the model {summary['model_outputs']} "
                    f"outputs)")
    warning = (f"warning: accuracy {summary['accuracy']:.2f} against labels is at chance level (1/"
               f"{round(1 / chance)} = {chance:.2f}, {summary['samples']} samples): the model does not recognise "
               f"these targets (labels that are not its classes{mismatch}, or untrained weights), so faithfulness "
               f"scores of them mean little; map the labels (data.classes, wnid or integer folder names) or "
               f"explain data.target: predicted")
    return line, warning


@dataclass
class StudyPlan:
    """What ``study create`` would write, checked and measured: the config as it will be stored (its
    metrics settled against the data), the facts preflight and the cost probe found (user attrs to
    be), and where the study would go. ``--dry-run`` stops here."""

    config: StudyConfig
    facts: dict[str, Any]
    storage_url: str


def plan_study(cfg: StudyConfig, *, name: str | None = None, storage: str | None = None,
               n_trials: int | None = None, baselines: Sequence[str] = (), probe: bool = False) -> StudyPlan:
    """Everything :func:`create_study` checks before it writes: refuses an existing study, settles
    the metrics against the data, runs the preflight; with ``probe`` (``--dry-run``) also measures one
    trial's cost on a setting of the space (:func:`xaiopt.study.estimate.probe_cost`). Writes nothing."""
    from xaiopt.study.estimate import COST_ATTR, probe_cost
    from xaiopt.study.metric_choice import METRIC_CHOICE_ATTR, settle_metrics

    name = cfg.name if name is None else name
    check_study_name(name)
    url = storage or cfg.storage or default_storage_url()
    path = sqlite_path(url)
    # a SQLite file that is not there yet holds no study; it is only written once all checks pass
    existed = path is None or path.exists()
    if existed:
        _refuse_existing(open_storage(url), name, url)
    update: dict[str, Any] = {}
    if cfg.name != name:
        update["name"] = name
    if n_trials is not None:
        if n_trials < 1:
            raise ConfigError(f"--n-trials must be >= 1, got {n_trials}")
        update["n_trials"] = n_trials
    wanted = list(dict.fromkeys([*cfg.baselines, *baselines]))
    if wanted != cfg.baselines:
        update["baselines"] = wanted
    if update:
        cfg = cfg.model_copy(update=update)
    cfg, metric_note = settle_metrics(cfg)
    facts = preflight(cfg)
    if cfg.decision.prefer:
        from xaiopt.metrics.preferences import category_weights

        # a weight for a category the study has no metric of is a mistake caught before anything is written
        category_weights(dict(cfg.decision.prefer), present=list(dict.fromkeys(facts[CATEGORIES_ATTR].values())),
                         what="decision.prefer")
    facts[METRIC_CHOICE_ATTR] = metric_note
    facts[COST_ATTR] = probe_cost(cfg) if probe else None
    return StudyPlan(config=cfg, facts=facts, storage_url=url)


def create_study(cfg: StudyConfig, *, name: str | None = None, storage: str | None = None,
                 artifact_dir: str | os.PathLike[str] | None = None, n_trials: int | None = None,
                 baselines: Sequence[str] = ()) -> LoadedStudy:
    """Validate ``cfg`` against the model and data, then create the study in ``storage``
    (:func:`plan_study`, then the writes). ``xaiopt study create`` then runs the first trial to
    measure the cost (:func:`xaiopt.study.estimate.measure_first_trial`).

    ``n_trials`` sets (overrides) the study's total trial budget, shared by all its workers.
    ``baselines`` (added to the config's ``baselines``) are named explainers enqueued here, once,
    as the study's first trials (user attr ``baseline``); see :mod:`xaiopt.study.baselines`.

    Example::

        loaded = create_study(load_config("studies/quickstart.yaml"), storage="sqlite:///q.db")
        loaded.study.metric_names    # ['sparseness', 'region_perturbation', ...]
    """
    name = cfg.name if name is None else name
    plan = plan_study(cfg, name=name, storage=storage, n_trials=n_trials, baselines=baselines)
    cfg, facts, url = plan.config, plan.facts, plan.storage_url
    queue = _baseline_queue(cfg, facts[GROUPS_ATTR])
    from xaiopt.objective import metric_directions
    from xaiopt.objective.attrs import BASELINE as BASELINE_ATTR

    directions = metric_directions(cfg)
    # SQLite: the file's lock is held from here to the last write, and the file is made here if missing
    with creating_study(url, name) as new_file:
        rdb: Any = None
        made = False
        try:
            rdb = open_storage(url)
            _refuse_existing(rdb, name, url)
            try:
                study = optuna.create_study(storage=rdb, study_name=name, directions=directions)
            except optuna.exceptions.DuplicatedStudyError:
                # another `study create` of the same name won the race since the check above
                raise StudyExistsError(f"study {name!r} already exists in {_where(url)} (created by another "
                                       f"process just now; choose another --name)") from None
            made = True
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names([m.name for m in cfg.metrics])
            stored = config_to_dict(cfg)
            if stored.get("storage"):
                # the study lives in that database already; its password is never written into it
                stored["storage"] = _redact(stored["storage"])
            study.set_user_attr(CONFIG_ATTR, stored)
            study.set_user_attr(VERSION_ATTR, __version__)
            for key, value in facts.items():
                study.set_user_attr(key, value)
            art = Path(artifact_dir).resolve() if artifact_dir else default_artifact_dir(url, name)
            study.set_user_attr(ARTIFACTS_ATTR, str(art))
            for label, params in queue:
                study.enqueue_trial(params, user_attrs={BASELINE_ATTR: label})
        except BaseException:
            # undo only what this call made: a study another process created, a file this process did not
            # make or one that holds another study, is never touched; an undo that fails (the database
            # went away) leaves the error that stopped the creation as the one line to show
            with contextlib.suppress(Exception):
                if made:
                    optuna.delete_study(study_name=name, storage=rdb)
                new_file.remove_if_unused(rdb)
            raise
    return LoadedStudy(study=study, config=cfg, storage_url=url)


def _baseline_queue(cfg: StudyConfig, groups: dict[str, list[str]]) -> list[tuple[str, dict[str, Any]]]:
    """The baselines' trials, checked against the space before anything is written."""
    import torch

    from xaiopt.objective import get_benchmark
    from xaiopt.space import SearchSpace
    from xaiopt.study.baselines import baseline_trials

    if not cfg.baselines:
        return []
    bench = get_benchmark(cfg, torch.device("cpu"))
    space = SearchSpace(cfg.space, bench.layers, grid=cfg.sampler.name == "grid")
    modules = dict(bench.model.named_modules())
    dense = [g for g, mods in groups.items() if mods and all(isinstance(modules.get(m), torch.nn.Linear)
                                                             for m in mods)]
    queue = baseline_trials(cfg.baselines, space, dense_groups=dense)
    if cfg.n_trials is not None and len(queue) > cfg.n_trials:
        raise ConfigError(f"baselines: {len(queue)} baseline trials ({', '.join(label for label, _ in queue)}) do "
                          f"not fit in the budget of n_trials={cfg.n_trials}")
    return queue


# Optuna's study_name column: VARCHAR(512), counted in characters by PostgreSQL and MySQL
MAX_STUDY_NAME = 512


def check_study_name(name: str) -> None:
    """Refuse, before anything is written, a study name that no storage can hold or no one could type."""
    if not name.strip():
        raise ConfigError(f"study name {name!r} is empty; give one with --name NAME or `name:` in the config")
    if len(name) > MAX_STUDY_NAME:
        raise ConfigError(f"study name is {len(name)} characters long, longer than a storage holds (at most "
                          f"{MAX_STUDY_NAME}); give a shorter one with --name NAME or `name:` in the config")
    bad = re.search(r"[\x00-\x1f\x7f]", name)
    if bad:
        raise ConfigError(f"study name {name!r} holds the control character {bad.group()!r}; give a name of "
                          f"printable characters with --name NAME or `name:` in the config")


def _refuse_existing(rdb, name: str, url: str) -> None:
    if name in optuna.get_all_study_names(rdb):
        raise StudyExistsError(
            f"study {name!r} already exists in {_where(url)} "
            f"(choose another --name, or `xaiopt study delete {shlex.quote(name)}`)"
        )


def load_study(name: str, *, storage: str | None = None, heartbeat: bool = False) -> LoadedStudy:
    """Load an xaiopt study (its config included) by name."""
    rdb = open_storage(storage, must_exist=True)
    url = storage or rdb.url
    names = optuna.get_all_study_names(rdb)
    if name not in names:
        valid = ", ".join(names) if names else "none: create one with `xaiopt study create CONFIG`"
        raise StudyError(f"study {name!r} does not exist in {_where(url)} (studies there: {valid})")
    study = optuna.load_study(study_name=name, storage=rdb)
    config = _config_of(study, name)
    if heartbeat and not is_sqlite(url):
        # the heartbeat interval is the study's own setting: known only once its config is read
        rdb = open_storage(url, heartbeat_interval=config.runtime.heartbeat_interval,
                           retry_seconds=config.runtime.storage_retry_seconds)
        study = optuna.load_study(study_name=name, storage=rdb)
    return LoadedStudy(study=study, config=config, storage_url=url)


def _config_of(study: optuna.Study, name: str) -> StudyConfig:
    raw = study.user_attrs.get(CONFIG_ATTR)
    if raw is None:
        raise StudyError(f"study {name!r} was not created by xaiopt (it has no {CONFIG_ATTR!r} user attr)")
    return parse_config(raw, source=f"study {name!r}")


def list_studies(*, storage: str | None = None) -> list[dict[str, Any]]:
    """One summary per study in the storage."""
    rdb = open_storage(storage, must_exist=True)
    out = []
    for s in optuna.get_all_study_summaries(rdb, include_best_trial=False):
        counts: dict[str, int] = {}
        for t in optuna.load_study(study_name=s.study_name, storage=rdb).get_trials(deepcopy=False):
            counts[t.state.name] = counts.get(t.state.name, 0) + 1
        out.append({
            "name": s.study_name,
            "directions": [d.name.lower() for d in s.directions],
            "metrics": s.user_attrs.get(CONFIG_ATTR, {}).get("metrics") and [
                m["name"] for m in s.user_attrs[CONFIG_ATTR]["metrics"]
            ],
            "trials": counts,
            "created": s.datetime_start.isoformat(timespec="seconds") if s.datetime_start else None,
        })
    return out


def delete_study(name: str, *, storage: str | None = None) -> None:
    """Delete study ``name`` and its trials; refused while a worker runs it (:mod:`xaiopt.study.presence`).

    Returns only once the study is verifiably gone: Optuna's own delete ignores the integrity error
    that a trial written at the same moment (by a tool that takes no lock) causes, and keeps the study.
    """
    rdb = open_storage(storage, must_exist=True)
    url = storage or rdb.url
    if name not in optuna.get_all_study_names(rdb):
        raise StudyError(f"study {name!r} does not exist in {_where(url)}")
    study_id = rdb.get_study_id_from_name(name)
    with deleting(url, name, study_id, rdb):
        for attempt in range(3):
            if not study_exists(rdb, study_id):
                return
            with contextlib.suppress(KeyError):  # gone since the check
                rdb.delete_study(study_id)
            if attempt < 2 and study_exists(rdb, study_id):
                time.sleep(0.5 * (attempt + 1))
        if study_exists(rdb, study_id):
            raise StudyError(f"study {name!r} is not deleted: something that takes no worker lock (the optuna CLI, "
                             f"optuna-dashboard, an older xaiopt) kept writing trials to it; stop it and try again")


def _where(url: str) -> str:
    path = sqlite_path(url)
    return str(path) if path is not None else url.split("@")[-1]
