"""SearchSpace: the config's space section as define-by-run Optuna suggestions.

Parameter names are stable and readable in optuna-dashboard: ``canonize``, ``first_layer``,
``<group>.rule`` and, only when that rule takes one, ``<group>.gamma`` / ``<group>.epsilon`` (or
``<group>.<param>`` for a plugin rule's parameter, its values from ``space.params.<param>``).
The grid sampler cannot handle conditional parameters, so in grid mode each group is one
categorical ``<group>.setting`` whose values are ``gamma=0.25``, ``zplus``, ... (the paper's
grid is exactly the product of these lists).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna

from xaiopt.config import Choices, Range, RuleChoice, SpaceConfig
from xaiopt.errors import ConfigError
from xaiopt.space.groups import LayerGroups
from xaiopt.space.rules import get_rule
from xaiopt.space.spec import ExplainerSpec, GroupRule


@dataclass(frozen=True)
class GroupSpace:
    """Resolved choices of one layer group."""

    name: str
    rules: tuple[str, ...]
    params: dict[str, Choices | Range]

    def settings(self) -> list[str]:
        """Every (rule, value) pair as one string, for the grid sampler."""
        out: list[str] = []
        for r in self.rules:
            p = get_rule(r).param
            if p is None:
                out.append(r)
            else:
                space = self.params[p]
                assert isinstance(space, Choices)
                out.extend(f"{r}={v:g}" for v in space.choices)
        return out


def _parse_setting(setting: str) -> GroupRule:
    if "=" in setting:
        rule, value = setting.split("=", 1)
        return GroupRule(rule, float(value))
    return GroupRule(setting, None)


class SearchSpace:
    """Turns an Optuna trial into an :class:`ExplainerSpec`.

    Example::

        space = SearchSpace(cfg.space, layer_groups)
        spec = space.suggest(trial)
    """

    def __init__(self, cfg: SpaceConfig, layers: LayerGroups, *, grid: bool = False):
        self.cfg = cfg
        self.layers = layers
        self.grid = grid
        if cfg.attention is not None and not layers.transformer:
            raise ConfigError("space.attention: the model runs no attention (no softmax or scaled_dot_product_"
                              "attention on the input's path, measured on a forward pass); remove space.attention")
        # a transformer's attention rule: AttnLRP unless the study searches it
        self.attention: list[str] = list(cfg.attention or ["attnlrp"]) if layers.transformer else []
        if cfg.base is not None and cfg.base != ["lrp"] and layers.transformer:
            raise ConfigError("space.base: the model runs attention; a transformer's rules are AttnLRP's or CP-LRP's "
                              "(space.attention), not a CNN base composite; remove space.base")
        # a CNN's base composite (lrp unless the study searches it)
        self.base: list[str] = list(cfg.base or ["lrp"])
        self.groups: list[GroupSpace] = []
        for name in layers.non_empty():
            override = cfg.overrides.get(name, RuleChoice())
            rules = tuple(override.rules if override.rules is not None else cfg.rules or ())
            params = {}
            # gamma, epsilon and the parameters of plugin rules (space.params), the group's own first
            for p in ("gamma", "epsilon", *cfg.params, *override.params):
                value = override.param_space(p) or cfg.param_space(p)
                if value is not None:
                    params[p] = value
            self.groups.append(GroupSpace(name=name, rules=rules, params=params))

    # -- Optuna -------------------------------------------------------------------------------
    def suggest(self, trial: optuna.Trial) -> ExplainerSpec:
        canonize = self._categorical(trial, "canonize", list(self.cfg.canonize))
        first = self._categorical(trial, "first_layer", list(self.cfg.first_layer))
        attention = self._categorical(trial, "attention", self.attention) if self.attention else None
        base = self._categorical(trial, "base", self.base)
        groups: dict[str, GroupRule] = {}
        for g in self.groups:
            if self.grid:
                groups[g.name] = _parse_setting(self._categorical(trial, f"{g.name}.setting", g.settings()))
                continue
            rule = self._categorical(trial, f"{g.name}.rule", list(g.rules))
            param = get_rule(rule).param
            value = None
            if param is not None:
                space = g.params[param]
                key = f"{g.name}.{param}"
                if isinstance(space, Range):
                    value = trial.suggest_float(key, space.low, space.high, log=space.log)
                else:
                    value = float(self._categorical(trial, key, list(space.choices)))
            groups[g.name] = GroupRule(rule, value)
        return ExplainerSpec(canonize=bool(canonize), first_layer=str(first), groups=groups, attention=attention,
                             base=str(base))

    @staticmethod
    def _categorical(trial: optuna.Trial, name: str, choices: list[Any]) -> Any:
        # a single choice is a constant, not a search dimension
        if len(choices) == 1:
            return choices[0]
        return trial.suggest_categorical(name, choices)

    def grid_space(self) -> dict[str, list[Any]]:
        """The search space as the grid sampler wants it (only the dimensions with > 1 value)."""
        space: dict[str, list[Any]] = {}
        if len(self.cfg.canonize) > 1:
            space["canonize"] = list(self.cfg.canonize)
        if len(self.cfg.first_layer) > 1:
            space["first_layer"] = list(self.cfg.first_layer)
        if len(self.attention) > 1:
            space["attention"] = list(self.attention)
        if len(self.base) > 1:
            space["base"] = list(self.base)
        for g in self.groups:
            settings = g.settings()
            if len(settings) > 1:
                space[f"{g.name}.setting"] = settings
        return space

    def size(self) -> int | None:
        """Number of distinct configurations, or None when a parameter is continuous."""
        n = len(self.cfg.canonize) * len(self.cfg.first_layer) * max(len(self.attention), 1) * len(self.base)
        for g in self.groups:
            if any(isinstance(p, Range) for r in g.rules if (p := g.params.get(get_rule(r).param or "")) is not None):
                return None
            n *= len(g.settings())
        return n
