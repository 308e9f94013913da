"""``quantus:<ClassName>``: any Quantus 0.6 metric class as a (slow, numpy) registry entry."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np
import torch
from torch import Tensor

from xaiopt.errors import ConfigError, UnknownNameError

from .context import MetricContext
from .registry import DIRECTIONS, MetricInfo, Param

_CATEGORY = {
    "Faithfulness": "faithfulness",
    "Robustness": "robustness",
    "Randomisation": "randomization",
    "Complexity": "complexity",
    "Localisation": "localization",
    "Axiomatic": "axiomatic",
}
_DIRECTION = {"higher": "maximize", "lower": "minimize"}
# Set by the adapter itself; naming them in a config would clash.
_RESERVED = {"self", "args", "kwargs", "display_progressbar"}


def _quantus_classes() -> dict[str, type]:
    import quantus

    return {
        name: obj
        for name, obj in vars(quantus).items()
        if isinstance(obj, type) and issubclass(obj, quantus.Metric) and obj is not quantus.Metric
    }


def _init_params(cls: type) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for name, p in inspect.signature(init).parameters.items():
            if name in _RESERVED or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            out[name] = None if p.default is inspect.Parameter.empty else p.default
    return out


@dataclass(frozen=True)
class QuantusMetricInfo(MetricInfo):
    """A Quantus metric class behind the :class:`MetricInfo` interface.

    Parameters are the class's constructor arguments (passed through unchecked in type), plus
    ``direction`` ("maximize"/"minimize"), required when the class declares none and otherwise
    an override. Curves are averaged per sample; MPRT's per-layer dict is averaged over layers.
    """

    quantus_class: Optional[type] = None
    declared_direction: Optional[str] = None

    def validate_params(self, params: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
        params = dict(params or {})
        for key in params:
            if key not in self.params:
                raise self._bad(f"unknown parameter '{key}'")
        direction = params.get("direction", self.declared_direction)
        if direction not in DIRECTIONS:
            raise self._bad(f"parameter 'direction' = {direction!r} must be one of 'maximize', 'minimize'")
        params["direction"] = direction
        return params

    def direction_for(self, params: Optional[Mapping[str, Any]] = None) -> str:
        return self.validate_params(params)["direction"]

    def __call__(self, ctx: MetricContext, **params: Any) -> Tensor:
        params = self.validate_params(params)
        params.pop("direction")
        if self.needs_masks and ctx.masks is None:
            raise ConfigError(f"metric '{self.name}' needs segmentation masks but the dataset has none")
        if ctx.fixed:
            raise ConfigError(f"metric '{self.name}': Quantus calls the model with the images alone and cannot pass "
                              f"its fixed inputs (the questions); valid: xaiopt's own metrics")
        params.setdefault("disable_warnings", True)
        metric = self.quantus_class(**params)
        device = ctx.device

        def explain_func(model, inputs, targets, **_: Any) -> np.ndarray:
            x = torch.as_tensor(inputs, device=device, dtype=ctx.x.dtype)
            t = torch.as_tensor(np.asarray(targets), device=device).long().reshape(-1)
            if model is ctx.model:
                a = ctx.explain(x, t)
            elif ctx.explain_with is not None:
                a = ctx.explain_with(model, x, t)
            else:
                raise ConfigError(f"metric '{self.name}' explains another model; needs MetricContext.explain_with")
            return a.detach().float().cpu().numpy()

        out = metric(
            model=ctx.model,
            x_batch=ctx.x.detach().cpu().numpy(),
            y_batch=ctx.y.detach().cpu().numpy(),
            a_batch=ctx.attributions.detach().float().cpu().numpy(),
            s_batch=None if ctx.masks is None else ctx.masks.detach().cpu().numpy().astype(np.float32),
            channel_first=True,
            explain_func=explain_func,
            device=str(device),
            batch_size=ctx.batch_budget,
        )
        if isinstance(out, dict):  # MPRT: {layer: [score per sample]}
            layers = [np.asarray(v, dtype=np.float64) for k, v in out.items() if k != "original"]
            scores = np.mean(np.stack(layers), axis=0)
        else:
            scores = np.array([np.nanmean(np.asarray(s, dtype=np.float64)) for s in out])
        return torch.as_tensor(scores, dtype=torch.float32, device=device)


def _not_used(ctx: MetricContext, **params: Any) -> Tensor:
    raise RuntimeError("QuantusMetricInfo is called directly")


def quantus_metric(class_name: str) -> QuantusMetricInfo:
    """The adapter for ``quantus:<class_name>``; UnknownNameError for a class Quantus lacks."""
    classes = _quantus_classes()
    cls = classes.get(class_name)
    if cls is None:
        raise UnknownNameError(
            f"unknown metric 'quantus:{class_name}'; valid Quantus metrics: "
            + ", ".join(f"quantus:{n}" for n in sorted(classes))
        )
    direction = getattr(cls, "score_direction", None)
    declared = _DIRECTION.get(getattr(direction, "value", None))
    category_enum = getattr(cls, "evaluation_category", None)
    category = _CATEGORY.get(getattr(category_enum, "value", None), "axiomatic")
    params = {k: Param(v, type=object) for k, v in _init_params(cls).items()}
    params["direction"] = Param(declared, type=str, choices=DIRECTIONS)
    return QuantusMetricInfo(
        name=f"quantus:{class_name}",
        category=category,
        direction=declared or "maximize",
        needs_masks=category == "localization",
        params=params,
        func=_not_used,
        passes="Quantus's own (numpy, per-step model calls)",
        doc=(cls.__doc__ or "").strip().split("\n")[0],
        quantus_class=cls,
        declared_direction=declared,
    )
