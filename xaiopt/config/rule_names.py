"""The rule names a study config may use: the built-in ones and those a plugin declares.

The config room imports nothing of xaiopt, so it cannot ask :mod:`xaiopt.space.rules` which rules
exist. Instead ``xaiopt.space.register_rule`` declares every rule it registers here (its name, its
parameter, whether it needs the input bounds), and the schema checks names and parameters against
this table. A plugin listed under ``plugins:`` is imported before the config is validated
(:func:`xaiopt.config.loader.parse_config`), so the rules it registers are known by then.

Example::

    declare_rule("lab_alphabeta", param="alpha")     # what register_rule does for a plugin's rule
    group_rules()                                   # (..., 'wsquare', 'lab_alphabeta')
    rule_param("lab_alphabeta")                     # 'alpha'
"""

from __future__ import annotations

from dataclasses import dataclass

RULES = ("epsilon", "gamma", "alpha2beta1", "alpha1beta0", "zplus", "flat", "wsquare", "zbox", "pass",
         "excitation_backprop")
GROUP_RULES = ("epsilon", "gamma", "alpha2beta1", "alpha1beta0", "zplus", "flat", "wsquare", "excitation_backprop")
FIRST_LAYER_RULES = ("zbox", "flat", "wsquare", "same")
# built-in rule -> its parameter; each of these parameters has a field of its own (space.gamma, ...)
PARAMETRISED_RULES = {"gamma": "gamma", "epsilon": "epsilon"}
BUILTIN_PARAMS = tuple(PARAMETRISED_RULES.values())


@dataclass(frozen=True)
class DeclaredRule:
    """A rule registered outside the built-in table: its name and parameter (None: takes none)."""

    name: str
    param: str | None
    needs_bounds: bool = False


_DECLARED: dict[str, DeclaredRule] = {}


def declare_rule(name: str, *, param: str | None = None, needs_bounds: bool = False) -> None:
    """Make ``name`` a rule the config accepts (built-in names are known already)."""
    if name in RULES:
        return
    _DECLARED[name] = DeclaredRule(name=name, param=param, needs_bounds=needs_bounds)


def declared_rules() -> list[DeclaredRule]:
    return list(_DECLARED.values())


def group_rules() -> tuple[str, ...]:
    """Rules a layer group may take: the built-in ones, then the declared ones."""
    return GROUP_RULES + tuple(_DECLARED)


def first_layer_rules() -> tuple[str, ...]:
    """Rules of the first layer: the built-in ones, then declared rules without a parameter."""
    return FIRST_LAYER_RULES + tuple(r.name for r in _DECLARED.values() if r.param is None)


def rule_param(name: str) -> str | None:
    """The parameter rule ``name`` takes (None for parameter-free or unknown rules)."""
    if name in PARAMETRISED_RULES:
        return PARAMETRISED_RULES[name]
    declared = _DECLARED.get(name)
    return declared.param if declared is not None else None


def plugin_params() -> dict[str, list[str]]:
    """Parameter name -> the declared rules taking it, for parameters without a field of their own
    (a declared rule with parameter ``epsilon`` takes its values from ``space.epsilon``)."""
    out: dict[str, list[str]] = {}
    for r in _DECLARED.values():
        if r.param is not None and r.param not in BUILTIN_PARAMS and not r.needs_bounds:
            out.setdefault(r.param, []).append(r.name)
    return out
