"""The search space: layer groups, LRP rules and their parameters, trial -> ExplainerSpec -> composite.

The names below load their module on first use (:mod:`xaiopt.lazy`); specs, groups and rule names
are read without torch (only :mod:`xaiopt.space.composite` and resolving groups on a model need it).
"""

from typing import TYPE_CHECKING

from xaiopt.lazy import lazy_exports

if TYPE_CHECKING:
    from xaiopt.space.groups import LayerGroups, forward_order, resolve_groups
    from xaiopt.space.rules import RuleDef, get_rule, register_rule, rule_names
    from xaiopt.space.search import SearchSpace
    from xaiopt.space.spec import ExplainerSpec, GroupRule

_MODULES = {
    "xaiopt.space.groups": ("LayerGroups", "forward_order", "resolve_groups"),
    "xaiopt.space.rules": ("RuleDef", "get_rule", "register_rule", "rule_names"),
    "xaiopt.space.search": ("SearchSpace",),
    "xaiopt.space.spec": ("ExplainerSpec", "GroupRule"),
}
__getattr__, __dir__ = lazy_exports(__name__, {n: m for m, names in _MODULES.items() for n in names})

__all__ = [
    "ExplainerSpec", "GroupRule", "LayerGroups", "RuleDef", "SearchSpace", "forward_order", "get_rule",
    "register_rule", "resolve_groups", "rule_names",
]
