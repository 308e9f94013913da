"""The Python API: studies from Python objects, custom objectives, and the results of a finished study.

Everything here is re-exported from :mod:`xaiopt` (``xaiopt.study_config``, ``xaiopt.run_study``, ...).
A study built here is the same Optuna study the YAML path builds: its validated config is stored in
it, and ``optuna-dashboard``, ``xaiopt study pareto|recommend|report`` and the workers read it.

Example::

    import torch, xaiopt
    model = torch.nn.Sequential(...)                     # your own nn.Module
    cfg = xaiopt.study_config(name="mine", model=model, data=(x, y, masks),
                              space={"layer_groups": 2}, metrics=["sparseness", "pointing_game"],
                              sampler="random", n_trials=10)
    loaded = xaiopt.run_study(cfg, storage="sqlite:///mine.db", device="cpu")
    for trial in xaiopt.pareto_front(loaded):
        print(trial.number, trial.explainer, trial.values)
    composite = xaiopt.pareto_front(loaded)[0].composite(model)   # plain zennit
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from xaiopt.config import StudyConfig, load_config, parse_config
from xaiopt.errors import ConfigError, StudyError, StudyExistsError
from xaiopt.metrics import MetricContext, register_metric
from xaiopt.metrics.registry import CATEGORIES, DIRECTIONS, MetricInfo
from xaiopt.zoo.evaldata import EvalData
from xaiopt.zoo.registered import eval_data, register_dataset, register_model

ExplainFn = Callable[[Tensor, Tensor], Tensor]
ObjectiveFn = Callable[[ExplainFn, MetricContext], Mapping[str, Tensor | float]]
DataArg = EvalData | str | Sequence[Tensor]

__all__ = [
    "CustomObjective", "ParetoTrial", "eval_data", "pareto_front", "register_dataset", "register_model",
    "register_objective", "run_study", "study_config",
]


# --- custom objectives -------------------------------------------------------------------------

@dataclass(frozen=True)
class CustomObjective:
    """A registered custom objective: one function, several named values, each with its direction.

    Each value is a metric of the registry (:func:`xaiopt.get_metric` knows it), so a study names
    them in ``metrics`` as it names built-in metrics, and everything that reads metrics (the Pareto
    front, ``recommend``, the report, optuna-dashboard) reads them too. :attr:`metrics` is the list
    to put in a config.
    """

    name: str
    values: dict[str, str]
    categories: dict[str, str]
    func: ObjectiveFn

    @property
    def metrics(self) -> list[str]:
        """The value names, in declaration order: the ``metrics`` entries of a study."""
        return list(self.values)

    def __call__(self, explain: ExplainFn, ctx: MetricContext) -> dict[str, Tensor]:
        """The objective's values on ``ctx``, each an (N,) float32 tensor (a scalar is repeated N times)."""
        raw = self.func(explain, ctx)
        if not isinstance(raw, Mapping):
            raise TypeError(f"objective {self.name!r} must return a mapping of value name to value, got "
                            f"{type(raw).__name__}")
        missing = [v for v in self.values if v not in raw]
        extra = [k for k in raw if k not in self.values]
        if missing or extra:
            raise TypeError(f"objective {self.name!r} returned {sorted(raw)}; it declared {self.metrics}")
        out = {}
        for key in self.values:
            value = raw[key]
            t = torch.as_tensor(value, dtype=torch.float32, device=ctx.device).detach()
            if t.dim() == 0:
                t = t.expand(ctx.n).clone()
            if t.shape != (ctx.n,):
                raise TypeError(f"objective {self.name!r}: value {key!r} has shape {tuple(t.shape)}; give a "
                                f"number or one value per sample, shape ({ctx.n},)")
            out[key] = t
        return out


class _Memo:
    """One trial's values of an objective, computed once for all its metrics.

    Every metric of a trial is called with the same :class:`MetricContext`; the memo holds that
    context (so its identity cannot be reused) and the values computed on it.
    """

    def __init__(self) -> None:
        self.ctx: MetricContext | None = None
        self.values: dict[str, Tensor] = {}

    def get(self, objective: CustomObjective, ctx: MetricContext) -> dict[str, Tensor]:
        if self.ctx is not ctx:
            self.values = objective(ctx.explain, ctx)
            self.ctx = ctx
        return self.values


def register_objective(name: str, *, values: Mapping[str, str], category: str | Mapping[str, str] = "faithfulness",
                       needs_masks: bool = False) -> Callable[[ObjectiveFn], CustomObjective]:
    """Register ``func(explain, ctx) -> {value name: number or (N,) tensor}`` as a custom objective.

    ``explain(x, targets)`` is the trial's explainer (LRP attributions ``(N, 1, H, W)`` with the
    trial's rules, registered on ``ctx.model``); ``explain.relevance_at(x, targets, layers=[...])``
    gives the relevance at named modules' outputs of ``ctx.model`` too (a dict of ``(N, C, ...)``
    tensors, the attributions under ``"input"``; docs/api.md); ``ctx`` is the trial's
    :class:`~xaiopt.metrics.MetricContext` (model, evaluation batch ``x, y, masks``, clean
    ``logits``, the trial's ``attributions``, ``seed``). ``values`` names each returned value and
    its direction (``maximize`` / ``minimize``); ``category`` is one category for all of them or one
    per value (complexity, faithfulness, localization, robustness, randomization, axiomatic).

    Return one value per sample where you can: the study's value is their mean, and the
    recommendation's paired bootstrap resamples them. A plain number is repeated for every sample.

    Register it where every process that runs or reads the study imports it: in the script that
    runs the study and reads it, or in a plugin module listed under ``plugins:``.

    Example::

        @xaiopt.register_objective("focus", values={"inside": "maximize"}, category="localization",
                                   needs_masks=True)
        def focus(explain, ctx):
            a = explain(ctx.x, ctx.y).clamp(min=0).flatten(1)
            return {"inside": (a * ctx.masks.flatten(1)).sum(1) / a.sum(1).clamp(min=1e-12)}

        cfg = xaiopt.study_config(name="f", model="benchmark:vgg", data="benchmark", metrics=focus.metrics)
    """
    if not isinstance(values, Mapping) or not values:
        raise ConfigError(f"register_objective({name!r}): values must name at least one value and its direction, "
                          f"e.g. {{'accuracy_drop': 'minimize'}}")
    bad = {k: d for k, d in values.items() if d not in DIRECTIONS}
    if bad:
        raise ConfigError(f"register_objective({name!r}): direction {next(iter(bad.values()))!r} of value "
                          f"{next(iter(bad))!r} is invalid (valid: {', '.join(DIRECTIONS)})")
    cats = {k: category for k in values} if isinstance(category, str) else dict(category)
    wrong = [k for k in values if cats.get(k) not in CATEGORIES]
    if wrong or set(cats) - set(values):
        which = (wrong or sorted(set(cats) - set(values)))[0]
        raise ConfigError(f"register_objective({name!r}): category of {which!r} is missing or invalid "
                          f"(valid: {', '.join(CATEGORIES)}, one for all values or one per value)")

    def wrap(func: ObjectiveFn) -> CustomObjective:
        objective = CustomObjective(name=name, values=dict(values), categories=cats, func=func)
        memo = _Memo()
        doc = (func.__doc__ or "").strip()
        for key, direction in values.items():
            def metric(ctx: MetricContext, *, _key: str = key) -> Tensor:
                return memo.get(objective, ctx)[_key]

            metric.__doc__ = f"Value {key!r} of the custom objective {name!r}. {doc}".strip()
            register_metric(key, category=cats[key], direction=direction, needs_masks=needs_masks,
                            passes=f"the custom objective {name!r}, once per trial for all its values")(metric)
        return objective

    return wrap


# --- building and running a study ----------------------------------------------------------------

_SLUG = re.compile(r"[^A-Za-z0-9_]")


def _slug(name: str) -> str:
    slug = _SLUG.sub("_", name)
    return slug if slug[:1].isalpha() or slug[:1] == "_" else f"s_{slug}"


def _model_section(model: nn.Module | str | Mapping[str, Any], name: str) -> dict[str, Any]:
    if isinstance(model, str):
        return {"name": model}
    if isinstance(model, Mapping):
        return dict(model)
    if isinstance(model, nn.Module):
        return {"name": register_model(name, model)}
    raise ConfigError(f"model: expected a torch.nn.Module, a model name (e.g. 'benchmark:vgg') or the YAML model "
                      f"section as a dict, got {type(model).__name__}")


def _data_section(data: DataArg | Mapping[str, Any], name: str) -> tuple[dict[str, Any], int | None]:
    """The config's data section and, for registered data, its number of samples."""
    if isinstance(data, str):
        return {"name": data}, None
    if isinstance(data, Mapping):
        return dict(data), None
    if isinstance(data, EvalData):
        return {"name": register_dataset(name, data)}, len(data)
    if isinstance(data, (tuple, list)) and len(data) in (2, 3) and all(
            isinstance(t, torch.Tensor) or t is None for t in data):
        batch = eval_data(*data)
        return {"name": register_dataset(name, batch)}, len(batch)
    raise ConfigError(f"data: expected a dataset name (e.g. 'benchmark'), an EvalData, a tuple (x, y) / "
                      f"(x, y, masks) of tensors or the YAML data section as a dict, got {type(data).__name__}")


def _metric_entries(metrics: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    for m in metrics:
        if isinstance(m, CustomObjective):
            out.extend(m.metrics)
        elif isinstance(m, MetricInfo):
            out.append(m.name)
        else:
            out.append(m)
    return out


def study_config(*, name: str = "xaiopt-study", model: nn.Module | str | Mapping[str, Any] = "benchmark:vgg",
                 data: DataArg | Mapping[str, Any] = "benchmark", space: Mapping[str, Any] | None = None,
                 metrics: Sequence[Any] | None = None, sampler: str | Mapping[str, Any] | None = None,
                 n_samples: int | None = None, n_trials: int | None = None, seed: int = 0, device: str = "auto",
                 target: str | None = None, holdout: float | None = None, baselines: Sequence[str] = (),
                 plugins: Sequence[str] = (), runtime: Mapping[str, Any] | None = None,
                 **config: Any) -> StudyConfig:
    """A validated :class:`StudyConfig` from Python objects, with no YAML file.

    ``model``: an ``nn.Module`` (registered in this process as ``python:NAME``, NAME from the study
    name), a model name (``benchmark:vgg``, ``torchvision:resnet18``, ``module:pkg.mod:fn``, ...) or
    the YAML ``model`` section as a dict (``{"name": ..., "weights": "DEFAULT"}``).
    ``data``: a dataset name (``benchmark``, ``imagefolder:PATH``, ...), an
    :class:`~xaiopt.zoo.EvalData`, tensors ``(x, y)`` / ``(x, y, masks)`` (registered like the
    model; ``n_samples`` defaults to all of them) or the YAML ``data`` section as a dict. ``space``: the
    YAML ``space`` section as a dict.
    ``metrics``: metric names, ``{"name": ..., "params": {...}}`` dicts or :class:`CustomObjective`
    objects (each contributes its values). ``sampler``: a name or ``{"name": ..., "params": ...}``.
    Any other top-level YAML field goes in ``config`` (``storage=``, ``data=...`` keys go in their
    arguments). Every value is checked as a YAML file's would be: a mistake raises ConfigError.

    An object registered here lives in this process only: :func:`run_study` in this process works,
    and a worker elsewhere is told in one line to register it through a plugin.

    Example::

        cfg = study_config(name="demo", model=my_net, data=(x, y), metrics=["sparseness"],
                           sampler="random", n_trials=8, space={"layer_groups": 2})
        cfg.model.name, cfg.data.name        # ('python:demo', 'python:demo') or the module: form
    """
    slug = _slug(name)
    data_doc, size = _data_section(data, slug)
    doc: dict[str, Any] = {"name": name, "seed": seed, "device": device, **config}
    doc["model"] = _model_section(model, slug)
    if n_samples is not None or size is not None:
        data_doc["n_samples"] = n_samples if n_samples is not None else size
    if target is not None:
        data_doc["target"] = target
    if holdout is not None:
        data_doc["holdout"] = holdout
    doc["data"] = data_doc
    for key, value in (("space", space), ("sampler", sampler), ("runtime", runtime), ("n_trials", n_trials)):
        if value is not None:
            doc[key] = dict(value) if isinstance(value, Mapping) else value
    if metrics is not None:
        doc["metrics"] = _metric_entries(metrics)
    if baselines:
        doc["baselines"] = list(baselines)
    if plugins:
        doc["plugins"] = list(plugins)
    return parse_config(doc, source="study_config")


def _as_config(config: StudyConfig | Mapping[str, Any] | str | os.PathLike[str]) -> StudyConfig:
    if isinstance(config, StudyConfig):
        return config
    if isinstance(config, Mapping):
        return parse_config(dict(config), source="run_study")
    if isinstance(config, (str, os.PathLike)):
        return load_config(Path(config))
    raise ConfigError(f"config: expected a StudyConfig, a dict or the path of a study YAML file, got "
                      f"{type(config).__name__}")


def run_study(config: StudyConfig | Mapping[str, Any] | str | os.PathLike[str], *, storage: str | None = None,
              n_trials: int | None = None, device: str | None = None, name: str | None = None,
              resume: bool = False, progress: bool = False, artifact_dir: str | os.PathLike[str] | None = None,
              timeout: float | None = None) -> Any:
    """Create the study of ``config`` (a :class:`StudyConfig`, a dict or a YAML path) and run its trials here.

    ``n_trials``: the study's total budget (overrides the config's ``n_trials``; one of the two is
    needed). ``resume``: continue a study of that name in ``storage`` instead of refusing it.
    ``storage`` defaults to the config's, else ``sqlite:///xaiopt.db``. Returns the
    :class:`~xaiopt.study.LoadedStudy` with every finished trial. Other workers (``xaiopt worker``)
    may join the same study through a shared PostgreSQL storage meanwhile, when the model and data
    are not in-process objects (or a plugin registers them).

    Example::

        loaded = run_study("studies/quickstart.yaml", storage="sqlite:///q.db", n_trials=5, device="cpu")
        loaded = run_study(cfg, storage="sqlite:///q.db", n_trials=10, resume=True)   # 10 in all
    """
    from xaiopt.study import create_study, load_study, optimize

    cfg = _as_config(config)
    study_name = name or cfg.name
    url = storage or cfg.storage
    budget = n_trials if n_trials is not None else cfg.n_trials
    if budget is None:
        raise ConfigError("n_trials: give run_study(..., n_trials=K) or n_trials in the config")
    try:
        create_study(cfg, name=study_name, storage=url, n_trials=budget, artifact_dir=artifact_dir)
    except StudyExistsError:
        if not resume:
            raise
        loaded = load_study(study_name, storage=url)
        if loaded.config.n_trials is not None and n_trials is not None and n_trials != loaded.config.n_trials:
            raise StudyError(f"study {study_name!r} has a budget of {loaded.config.n_trials} trials; resume it with "
                             f"n_trials={loaded.config.n_trials} or unset (valid: its own budget)") from None
    return optimize(study_name, storage=url, device=device, progress=progress, timeout=timeout)


# --- results ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ParetoTrial:
    """One Pareto-optimal distinct setting of a study.

    ``values``: metric name -> the study's value; ``directions``: metric name -> direction;
    ``settings``: the :class:`~xaiopt.ExplainerSpec` as a dict (canonize, first_layer, a rule and
    value per layer group); ``explainer``: the same as one line; ``params``: Optuna's trial params;
    ``baseline``: the baseline's name when the trial is an enqueued baseline.
    """

    number: int
    values: dict[str, float]
    directions: dict[str, str]
    settings: dict[str, Any]
    explainer: str
    params: dict[str, Any]
    baseline: str | None
    document: dict[str, Any]

    @property
    def spec(self) -> Any:
        """The setting as an :class:`~xaiopt.ExplainerSpec`."""
        from xaiopt.space import ExplainerSpec

        return ExplainerSpec.from_dict(self.settings)

    def composite(self, model: nn.Module) -> Any:
        """The setting as a zennit composite for ``model`` (the study's plain model, in eval mode):
        :func:`xaiopt.load_composite` of this trial's export document."""
        from xaiopt.space.exported import load_composite

        return load_composite(self.document, model)

    def export(self, out: str | os.PathLike[str]) -> Path:
        """Write the export document (``.json``, for :func:`xaiopt.load_composite`) atomically."""
        import json

        from xaiopt.files import write_atomic

        out = Path(out)
        if out.suffix != ".json":
            raise ConfigError(f"out: {out.name!r} must end in .json (xaiopt study export writes .py modules)")
        if not out.resolve().parent.is_dir():
            raise ConfigError(f"out: directory {out.parent} does not exist")
        write_atomic(out, json.dumps(self.document, indent=2, allow_nan=False) + "\n")
        return out


def pareto_front(loaded: Any, metrics: Sequence[str] | None = None) -> list[ParetoTrial]:
    """The Pareto-optimal distinct settings of ``loaded`` (a :class:`~xaiopt.study.LoadedStudy`) on
    ``metrics`` (default: all the study's), by trial number: the same front as ``xaiopt study pareto``.

    Example::

        front = pareto_front(xaiopt.load_study("quickstart", storage="sqlite:///xaiopt.db"))
        best = max(front, key=lambda t: t.values["sparseness"])
        best.export("best.json")
    """
    from xaiopt import __version__
    from xaiopt.objective.attrs import baseline, explainer_text, spec_dict
    from xaiopt.space import ExplainerSpec
    from xaiopt.space.exported import composite_document
    from xaiopt.study.export import study_layers
    from xaiopt.study.manage import BOUNDS_ATTR
    from xaiopt.study.pareto import front_trials

    study = loaded.study
    names = loaded.metric_names
    directions = dict(zip(names, (d.name.lower() for d in study.directions)))
    bounds = study.user_attrs[BOUNDS_ATTR]
    out = []
    for t in front_trials(loaded, None if metrics is None else list(metrics)):
        raw = spec_dict(t)
        if raw is None:
            continue
        spec = ExplainerSpec.from_dict(raw)
        values = {n: float(v) for n, v in zip(names, t.values)}
        document = composite_document(
            spec=spec, layers=study_layers(loaded, canonized=spec.canonize), low=bounds["low"], high=bounds["high"],
            study=study.study_name, trial=t.number, model=loaded.config.model.name,
            metrics=[{"name": n, "value": v, "direction": directions[n]} for n, v in values.items()],
            xaiopt_version=__version__)
        out.append(ParetoTrial(number=t.number, values=values, directions=directions, settings=raw,
                               explainer=explainer_text(t) or spec.describe(), params=dict(t.params),
                               baseline=baseline(t), document=document))
    return out
