"""The search space: layer groups, LRP rules and their parameters, trial -> ExplainerSpec -> composite."""

from xaiopt.space.groups import LayerGroups, forward_order, resolve_groups
from xaiopt.space.rules import RuleDef, get_rule, register_rule, rule_names
from xaiopt.space.search import SearchSpace
from xaiopt.space.spec import ExplainerSpec, GroupRule

__all__ = [
    "ExplainerSpec", "GroupRule", "LayerGroups", "RuleDef", "SearchSpace", "forward_order", "get_rule",
    "register_rule", "resolve_groups", "rule_names",
]
