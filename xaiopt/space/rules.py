"""LRP rules by name: a registry from the names a config uses to zennit hooks.

A rule declares only what differs (its zennit hook and which parameter it takes); the search
space, the composite builder and the export all read this one table. A plugin adds a rule with
:func:`register_rule`; the name (and its parameter) is then declared to the config too
(:func:`xaiopt.config.declare_rule`), so a study YAML that lists the plugin can search it.

Example (a plugin module, listed as ``plugins: [lab_rules]``)::

    from zennit.rules import AlphaBeta
    from xaiopt.space import register_rule

    class LabAlphaBeta(AlphaBeta):
        def __init__(self, alpha):
            super().__init__(alpha=alpha, beta=alpha - 1.0)

    register_rule("lab_alphabeta", param="alpha", code="LabAlphaBeta(alpha={param!r})")(LabAlphaBeta)
"""

from __future__ import annotations

import ast
import builtins
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from xaiopt.config import RULES as BUILTIN_RULES
from xaiopt.config import declare_rule
from xaiopt.errors import UnknownNameError

if TYPE_CHECKING:  # the built-in rules import zennit when a hook is built, not when a name is looked up
    import torch
    from zennit.core import Hook


@dataclass(frozen=True)
class RuleDef:
    """A named LRP rule: its parameter (if any) and how to build its zennit hook."""

    name: str
    param: str | None
    build: Callable[..., Hook]
    # source text of the hook, for the zennit export (`{param}`, `{low}`, `{high}` filled in)
    code: str
    needs_bounds: bool = False
    # the module that registered the rule (a plugin's, or xaiopt's own)
    module: str = __name__

    @property
    def builtin(self) -> bool:
        return self.name in BUILTIN_RULES

    def code_names(self) -> list[str]:
        """The names the export source :attr:`code` uses (``LabAlphaBeta`` of ``LabAlphaBeta(alpha=...)``)."""
        tree = ast.parse(self.code.format(param=0.0, low="LOW", high="HIGH"), mode="eval")
        names = [n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and not hasattr(builtins, n.id)]
        return list(dict.fromkeys(names))

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
    """Register a hook factory under ``name`` (a decorator).

    ``param``: the name of the one parameter the factory takes (its values come from the study's
    ``space.params.<param>``, or ``space.gamma`` / ``space.epsilon`` for those names); None for a
    parameter-free rule. ``code``: a Python expression that builds the same hook, for the Python
    export (``{param}`` is the value; ``{low}``/``{high}`` the input bounds when ``needs_bounds``);
    the names it uses are imported there from the module that registers the rule.

    Example::

        register_rule("lab_eps", param="stabilizer", code="Epsilon(epsilon={param!r})")(
            lambda v: Epsilon(epsilon=float(v)))
    """
    if not name or not name.replace("_", "a").isalnum() or name == "same":
        raise ValueError(f"rule name {name!r} must be letters, digits and _ (and not 'same')")
    if param is not None and needs_bounds:
        raise ValueError(f"rule {name!r}: a rule that needs the input bounds takes no parameter")
    try:
        ast.parse(code.format(param=0.0, low="LOW", high="HIGH"), mode="eval")
    except (SyntaxError, KeyError, IndexError, ValueError) as err:
        raise ValueError(f"rule {name!r}: code {code!r} is not a Python expression once {{param}}, {{low}}, "
                         f"{{high}} are filled in ({type(err).__name__}: {err})") from None

    # the caller's module: where a plugin registers the rule, and where the export imports its names from
    module = str(sys._getframe(1).f_globals.get("__name__", __name__))

    def wrap(factory: Callable[..., Hook]) -> Callable[..., Hook]:
        _RULES[name] = RuleDef(name=name, param=param, build=factory, code=code, needs_bounds=needs_bounds,
                               module=module)
        declare_rule(name, param=param, needs_bounds=needs_bounds)
        return factory

    return wrap


def get_rule(name: str) -> RuleDef:
    """The rule registered as ``name``; :class:`UnknownNameError` lists the valid names."""
    try:
        return _RULES[name]
    except KeyError:
        raise UnknownNameError(f"unknown rule {name!r} (valid: {', '.join(_RULES)}; a plugin's rule is known once "
                               f"its module is imported)") from None


def rule_names() -> list[str]:
    return list(_RULES)


def _zennit(rule: str, **kwargs: Any) -> Hook:
    from zennit import rules

    return getattr(rules, rule)(**kwargs)


def _fast_gamma(gamma: float) -> Hook:
    from xaiopt.space.fast_rules import FastGamma

    return FastGamma(gamma=gamma)


# gamma=0 is a valid point of the paper's grid: zennit's Gamma then reduces to the LRP-0 rule
# with its stabilizer, which is what the paper evaluates.
register_rule("epsilon", param="epsilon", code="Epsilon(epsilon={param!r})")(
    lambda v: _zennit("Epsilon", epsilon=float(v)))
# FastGamma (xaiopt.space.fast_rules): zennit's Gamma, fewer passes on non-negative layer inputs;
# the export names zennit's own Gamma, which gives the same relevance.
register_rule("gamma", param="gamma", code="Gamma(gamma={param!r})")(lambda v: _fast_gamma(float(v)))
register_rule("alpha2beta1", code="AlphaBeta(alpha=2.0, beta=1.0)")(lambda: _zennit("AlphaBeta", alpha=2.0, beta=1.0))
register_rule("alpha1beta0", code="AlphaBeta(alpha=1.0, beta=0.0)")(lambda: _zennit("AlphaBeta", alpha=1.0, beta=0.0))
register_rule("zplus", code="ZPlus()")(lambda: _zennit("ZPlus"))
register_rule("flat", code="Flat()")(lambda: _zennit("Flat"))
register_rule("wsquare", code="WSquare()")(lambda: _zennit("WSquare"))
register_rule("zbox", code="ZBox(low={low}, high={high})", needs_bounds=True)(
    lambda low, high: _zennit("ZBox", low=low, high=high)
)
register_rule("pass", code="Pass()")(lambda: _zennit("Pass"))
# Excitation Backprop's rule of one layer (Zhang et al. 2016): z+ with its stabilizer, as zennit's
# ExcitationBackprop composite puts it on every conv/linear layer. What else sets the EB composite apart
# (activations and batch norms keep their gradient) is the spec's base composite, not a layer rule.
register_rule("excitation_backprop", code="ZPlus(stabilizer=1e-06)")(lambda: _zennit("ZPlus", stabilizer=1e-6))
