"""Metric names -> :class:`MetricInfo` (category, direction, parameters, implementation)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Union

import torch
from torch import Tensor

from xaiopt.errors import ConfigError, UnknownNameError

from .categories import CATEGORIES, DIRECTIONS
from .context import MetricContext

# the modules whose decorators register the built-in metrics; loaded on the first look-up or
# registration, so that importing the package (e.g. for its categories) costs nothing
_BUILTIN_MODULES = ("complexity", "faithfulness", "localization", "randomization", "robustness")
_builtins_loaded = False


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    for module in _BUILTIN_MODULES:
        importlib.import_module(f"{__package__}.{module}")

_TYPE_NAMES = {bool: "a bool", int: "an int", float: "a number", str: "a string"}


@dataclass(frozen=True)
class Param:
    """A metric parameter: default, type (inferred from the default), optional choices/check."""

    default: Any
    type: Optional[type] = None
    choices: Optional[tuple[Any, ...]] = None
    check: Optional[Callable[[Any], bool]] = None
    valid: str = ""
    doc: str = ""

    @property
    def kind(self) -> type:
        if self.type is not None:
            return self.type
        return type(self.default)

    def describe(self) -> str:
        if self.choices is not None:
            what = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            what = _TYPE_NAMES.get(self.kind, self.kind.__name__)
            if self.valid:
                what += f" {self.valid}"
        if self.default is None:
            what += " or None"
        return what


def _coerce(value: Any, param: Param) -> tuple[bool, Any]:
    if value is None:
        return param.default is None, value
    kind = param.kind
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind is str:
        ok = isinstance(value, str)
        value = value.lower() if ok and param.choices is not None else value
    else:
        ok = isinstance(value, kind)
    if ok and param.choices is not None:
        ok = value in param.choices
    if ok and param.check is not None:
        ok = bool(param.check(value))
    return ok, value


@dataclass(frozen=True)
class MetricInfo:
    """A registered metric. Call it with a :class:`MetricContext` to get one score per sample.

    Example::

        info = get_metric("sparseness")
        info.direction                      # "maximize"
        params = info.validate_params({})   # defaults filled in
        scores = info(ctx, **params)        # (N,) tensor on ctx.x's device
    """

    name: str
    category: str
    direction: str
    needs_masks: bool
    params: Mapping[str, Param]
    func: Callable[..., Tensor]
    passes: Any = None
    doc: str = ""
    direction_fn: Optional[Callable[[dict], str]] = field(default=None, compare=False)

    @property
    def defaults(self) -> dict[str, Any]:
        return {k: p.default for k, p in self.params.items()}

    def _bad(self, message: str) -> ConfigError:
        valid = ", ".join(sorted(self.params)) or "(none)"
        return ConfigError(f"metric '{self.name}': {message}; valid parameters: {valid}")

    def validate_params(self, params: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
        """Defaults merged with ``params``; ConfigError naming metric, parameter and valid ones."""
        params = dict(params or {})
        out = self.defaults
        for key, value in params.items():
            if key not in self.params:
                raise self._bad(f"unknown parameter '{key}'")
            ok, coerced = _coerce(value, self.params[key])
            if not ok:
                raise self._bad(f"parameter '{key}' = {value!r} must be {self.params[key].describe()}")
            out[key] = coerced
        return out

    def direction_for(self, params: Optional[Mapping[str, Any]] = None) -> str:
        """The direction for these parameters (e.g. region_perturbation with order='lerf')."""
        if self.direction_fn is None:
            return self.direction
        return self.direction_fn(self.validate_params(params))

    def __call__(self, ctx: MetricContext, **params: Any) -> Tensor:
        checked = self.validate_params(params)
        if self.needs_masks and ctx.masks is None:
            raise ConfigError(
                f"metric '{self.name}' needs segmentation masks but the dataset has none; "
                "use a dataset with masks or drop this metric"
            )
        scores = self.func(ctx, **checked)
        return scores.detach().reshape(-1).to(device=ctx.device, dtype=torch.float32)


_REGISTRY: dict[str, MetricInfo] = {}


def register_metric(
    name: str,
    *,
    category: str,
    direction: str,
    needs_masks: bool = False,
    passes: Any = None,
    direction_for: Optional[Callable[[dict], str]] = None,
    **default_params: Union[Param, Any],
) -> Callable[[Callable[..., Tensor]], MetricInfo]:
    """Register ``func(ctx, **params) -> (N,) Tensor`` under ``name``.

    Example::

        @register_metric("sparseness", category="complexity", direction="maximize",
                         abs=True, normalise=True)
        def sparseness(ctx, *, abs, normalise): ...
    """
    if category not in CATEGORIES:
        raise ValueError(f"category {category!r} not in {CATEGORIES}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction {direction!r} not in {DIRECTIONS}")

    def wrap(func: Callable[..., Tensor]) -> MetricInfo:
        _load_builtins()  # a plugin's name is checked against the built-ins
        if name in _REGISTRY:
            raise ValueError(f"metric {name!r} registered twice")
        params = {k: v if isinstance(v, Param) else Param(v) for k, v in default_params.items()}
        info = MetricInfo(
            name=name,
            category=category,
            direction=direction,
            needs_masks=needs_masks,
            params=params,
            func=func,
            passes=passes,
            doc=(func.__doc__ or "").strip(),
            direction_fn=direction_for,
        )
        _REGISTRY[name] = info
        return info

    return wrap


def metric_names() -> list[str]:
    """The registered fast metrics (``quantus:<ClassName>`` names come on top)."""
    _load_builtins()
    return sorted(_REGISTRY)


def get_metric(name: str) -> MetricInfo:
    """The metric called ``name``; ``quantus:<ClassName>`` wraps a Quantus 0.6 metric class."""
    if isinstance(name, str) and name.startswith("quantus:"):
        from .quantus_adapter import quantus_metric

        return quantus_metric(name.split(":", 1)[1])
    _load_builtins()
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        valid = ", ".join(metric_names())
        raise UnknownNameError(
            f"unknown metric {name!r}; valid metrics: {valid} (or quantus:<ClassName>)"
        ) from None
