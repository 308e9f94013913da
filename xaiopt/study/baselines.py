"""Named baseline explainers (the paper's composites), as trials enqueued in a study.

A baseline is a point of the study's own search space, written in the study's parameter names
(``canonize``, ``first_layer``, ``<group>.rule``, ``<group>.gamma``/``.epsilon``, or
``<group>.setting`` for the grid sampler). It is enqueued once, when the study is created, and
its trials carry the user attr ``baseline: NAME``. A baseline that the configured space cannot
express is refused, never silently widened into the space: widening would change what the
sampler searches.

``NAME`` alone enqueues every canonization variant the space allows; ``NAME:canonized`` and
``NAME:plain`` pick one.

Example::

    from xaiopt.study.baselines import baseline_trials
    baseline_trials(["epsilon_plus"], space)
    # [('epsilon_plus:canonized', {'canonize': True, 'conv1.rule': 'zplus', ...}), ...]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

from xaiopt.config import Choices, Range
from xaiopt.errors import ConfigError, UnknownNameError
from xaiopt.space import SearchSpace
from xaiopt.space.rules import get_rule
from xaiopt.space.spec import GroupRule

_VARIANTS = {"canonized": True, "plain": False}
# zennit's composites put this epsilon on dense layers
_DENSE_EPSILON = 1e-6


@dataclass(frozen=True)
class Baseline:
    """A named composite: the rule of conv-like groups, of dense groups, and of the first layer, and
    the base composite of the layers no rule names (``space.base``)."""

    name: str
    conv: GroupRule
    dense: GroupRule
    first_layer: str
    description: str
    base: str = "lrp"


_BASELINES: dict[str, Baseline] = {}


def register_baseline(b: Baseline) -> Baseline:
    _BASELINES[b.name] = b
    return b


register_baseline(Baseline("epsilon_plus", GroupRule("zplus"), GroupRule("epsilon", _DENSE_EPSILON), "same",
                           "LRP-epsilon-plus: z+ on convolutions, epsilon on dense layers"))
register_baseline(Baseline("epsilon_plus_flat", GroupRule("zplus"), GroupRule("epsilon", _DENSE_EPSILON), "flat",
                           "LRP-epsilon-plus-flat: as epsilon_plus, flat rule on the first layer"))
register_baseline(Baseline("alpha2beta1", GroupRule("alpha2beta1"), GroupRule("epsilon", _DENSE_EPSILON), "same",
                           "LRP-alpha2beta1: alpha=2, beta=1 on convolutions, epsilon on dense layers"))
register_baseline(Baseline("epsilon_gamma_box", GroupRule("gamma", 0.25), GroupRule("epsilon", _DENSE_EPSILON),
                           "zbox", "LRP-epsilon-gamma-box: gamma=0.25 on convolutions, epsilon on dense, "
                           "z-box on the first layer"))
# zennit's ExcitationBackprop: z+ on every conv/linear layer (the first and the dense ones included),
# the gradient through activations and batch norms (the base composite), Norm on sums and average pools
register_baseline(Baseline("excitation_backprop", GroupRule("zplus"), GroupRule("zplus"), "same",
                           "Excitation Backprop (Zhang et al. 2016): z+ on every conv/linear layer, the gradient "
                           "through activations and batch norms", base="excitation_backprop"))


def baseline_names() -> list[str]:
    return list(_BASELINES)


def _parse(name: str) -> tuple[Baseline, list[bool] | None, str]:
    base, _, variant = name.partition(":")
    if base not in _BASELINES:
        raise UnknownNameError(f"baseline: unknown baseline {name!r} (valid: {', '.join(_BASELINES)}, "
                               f"optionally with :canonized or :plain)")
    if variant and variant not in _VARIANTS:
        raise UnknownNameError(f"baseline: unknown variant {variant!r} in {name!r} (valid: canonized, plain)")
    return _BASELINES[base], ([_VARIANTS[variant]] if variant else None), variant


def _value_in(value: float, space: Choices | Range) -> bool:
    if isinstance(space, Range):
        return space.low <= value <= space.high
    return any(math.isclose(value, c, rel_tol=1e-9, abs_tol=0.0) for c in space.choices)


def _choice_of(value: float, space: Choices | Range) -> float:
    # the stored parameter must be exactly one of the categorical choices
    if isinstance(space, Range):
        return value
    return next(c for c in space.choices if math.isclose(value, c, rel_tol=1e-9, abs_tol=0.0))


def _fixed(label: str, what: str, value: Any, allowed: list[Any], params: dict[str, Any], key: str) -> None:
    if value not in allowed:
        where = f"space.{what}" if what in ("canonize", "first_layer", "base") else "the space"
        raise ConfigError(f"baseline {label}: needs {what}={value!r}, but the search space allows only "
                          f"{allowed} (add it to {where}, or drop the baseline)")
    if len(allowed) > 1:
        params[key] = value


def _params(label: str, b: Baseline, canonize: bool, space: SearchSpace, dense: set[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    _fixed(label, "canonize", canonize, list(space.cfg.canonize), params, "canonize")
    _fixed(label, "first_layer", b.first_layer, list(space.cfg.first_layer), params, "first_layer")
    _fixed(label, "base", b.base, list(space.base), params, "base")
    if len(space.attention) > 1:  # a transformer's baseline is the composite under AttnLRP's attention rules
        params["attention"] = space.attention[0]
    for g in space.groups:
        want = b.dense if g.name in dense else b.conv
        if space.grid:
            settings = g.settings()
            match = next((s for s in settings if _setting_matches(s, want)), None)
            if match is None:
                raise ConfigError(f"baseline {label}: needs {g.name}={want.describe()}, but the grid allows only "
                                  f"{settings} (add it to the space, or drop the baseline)")
            if len(settings) > 1:
                params[f"{g.name}.setting"] = match
            continue
        _fixed(label, f"{g.name}.rule", want.rule, list(g.rules), params, f"{g.name}.rule")
        if want.value is None:
            continue
        pname = get_rule(want.rule).param
        pspace = g.params.get(pname)
        if pspace is None or not _value_in(want.value, pspace):
            allowed = pspace.choices if isinstance(pspace, Choices) else (
                f"[{pspace.low:g}, {pspace.high:g}]" if pspace is not None else "nothing")
            raise ConfigError(f"baseline {label}: needs {g.name}.{pname}={want.value:g}, but the search space "
                              f"allows {allowed} (add it to the space, or drop the baseline)")
        value = _choice_of(want.value, pspace)
        if isinstance(pspace, Range) or len(pspace.choices) > 1:
            params[f"{g.name}.{pname}"] = value
    return params


def _setting_matches(setting: str, want: GroupRule) -> bool:
    rule, _, value = setting.partition("=")
    if rule != want.rule:
        return False
    if want.value is None:
        return not value
    return bool(value) and math.isclose(float(value), want.value, rel_tol=1e-6)


def baseline_trials(names: Iterable[str], space: SearchSpace, *,
                    dense_groups: Iterable[str] = ("classifier",)) -> list[tuple[str, dict[str, Any]]]:
    """(label, params) per baseline variant, in the study's parameter names; each label once.

    ``dense_groups`` get the baseline's dense-layer rule, all other groups its convolution rule.
    Raises :class:`ConfigError` naming the first baseline the space cannot express.
    """
    dense = set(dense_groups)
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        b, variants, suffix = _parse(name)
        if variants is None:
            variants = list(space.cfg.canonize)
        for canonize in variants:
            label = f"{b.name}:{'canonized' if canonize else 'plain'}"
            if label not in out:
                out[label] = _params(label, b, canonize, space, dense)
    return list(out.items())
