"""LRP rules by name: a registry from the names a config uses to zennit hooks.

A rule declares only what differs (its zennit hook and which parameter it takes); the search
space, the composite builder and the export all read this one table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from zennit.core import Hook
from zennit.rules import AlphaBeta, Epsilon, Flat, Pass, WSquare, ZBox, ZPlus

from xaiopt.errors import UnknownNameError
from xaiopt.space.fast_rules import FastGamma


@dataclass(frozen=True)
class RuleDef:
    """A named LRP rule: its parameter (if any) and how to build its zennit hook."""

    name: str
    param: str | None
    build: Callable[..., Hook]
    # source text of the hook, for the zennit export (`{param}`, `{low}`, `{high}` filled in)
    code: str
    needs_bounds: bool = False

    def hook(self, value: float | None = None, *, low: torch.Tensor | None = None,
             high: torch.Tensor | None = None) -> Hook:
        if self.needs_bounds:
            if low is None or high is None:
                raise ValueError(f"rule {self.name!r} needs the input bounds low/high")
            return self.build(low=low, high=high)
        if self.param is not None:
            if value is None:
                raise ValueError(f"rule {self.name!r} needs a value for {self.param!r}")
            return self.build(value)
        return self.build()


_RULES: dict[str, RuleDef] = {}


def register_rule(name: str, *, param: str | None = None, code: str, needs_bounds: bool = False):
    """Register a hook factory under ``name`` (a decorator)."""

    def wrap(factory: Callable[..., Hook]) -> Callable[..., Hook]:
        _RULES[name] = RuleDef(name=name, param=param, build=factory, code=code, needs_bounds=needs_bounds)
        return factory

    return wrap


def get_rule(name: str) -> RuleDef:
    """The rule registered as ``name``; :class:`UnknownNameError` lists the valid names."""
    try:
        return _RULES[name]
    except KeyError:
        raise UnknownNameError(f"unknown rule {name!r} (valid: {', '.join(_RULES)})") from None


def rule_names() -> list[str]:
    return list(_RULES)


# gamma=0 is a valid point of the paper's grid: zennit's Gamma then reduces to the LRP-0 rule
# with its stabilizer, which is what the paper evaluates.
register_rule("epsilon", param="epsilon", code="Epsilon(epsilon={param!r})")(lambda v: Epsilon(epsilon=float(v)))
# FastGamma (xaiopt.space.fast_rules): zennit's Gamma, fewer passes on non-negative layer inputs;
# the export names zennit's own Gamma, which gives the same relevance.
register_rule("gamma", param="gamma", code="Gamma(gamma={param!r})")(lambda v: FastGamma(gamma=float(v)))
register_rule("alpha2beta1", code="AlphaBeta(alpha=2.0, beta=1.0)")(lambda: AlphaBeta(alpha=2.0, beta=1.0))
register_rule("alpha1beta0", code="AlphaBeta(alpha=1.0, beta=0.0)")(lambda: AlphaBeta(alpha=1.0, beta=0.0))
register_rule("zplus", code="ZPlus()")(ZPlus)
register_rule("flat", code="Flat()")(Flat)
register_rule("wsquare", code="WSquare()")(WSquare)
register_rule("zbox", code="ZBox(low={low}, high={high})", needs_bounds=True)(
    lambda low, high: ZBox(low=low, high=high)
)
register_rule("pass", code="Pass()")(Pass)
