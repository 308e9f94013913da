"""Which rule each module gets: the same assignment as the spec's zennit composite.

``xaiopt.space.composite.SpecComposite`` maps, in this order: the spec's rule by module name (grouped
layers, the first layer's rule), ``Pass`` for activations and batch norms, ``Norm`` for
``zennit.layer.Sum`` and average pooling, ``Epsilon(1e-6)`` for other Conv/Linear layers, nothing
for the rest (their plain gradient carries the relevance: max pooling, concatenation, reshapes,
``GateMul``, functional operations). Under the base composite ``excitation_backprop`` (zennit's
``ExcitationBackprop``) activations and batch norms take nothing either (their gradient carries the
relevance) and the other Conv/Linear layers take z+.
"""

from __future__ import annotations

from torch import Tensor, nn
from zennit.layer import Sum
from zennit.types import Activation, AvgPool, BatchNorm

from xaiopt.lrp.rules import RULES, AlphaBeta, Epsilon, LrpRule, Norm, Pass
from xaiopt.space import ExplainerSpec, LayerGroups, get_rule
from xaiopt.space.groups import is_weighted
from xaiopt.space.spec import UNGROUPED_EPSILON


def named_rules(spec: ExplainerSpec, layers: LayerGroups, *, low: Tensor | None,
                high: Tensor | None) -> dict[str, tuple[str, float | None]]:
    """Module name -> (rule name, value) for the spec's grouped layers and first layer
    (``ExplainerSpec.module_rules``), checked for what each rule needs."""
    chosen: dict[str, tuple[str, float | None]] = {}
    for name, choice in spec.module_rules(layers).items():
        definition = get_rule(choice.rule)  # UnknownNameError for a name the registry lacks
        if definition.needs_bounds and (low is None or high is None):
            raise ValueError(f"rule {choice.rule!r} needs the input bounds low/high")
        if definition.param is not None and not definition.needs_bounds and choice.value is None:
            raise ValueError(f"rule {choice.rule!r} needs a value for {definition.param!r}")
        chosen[name] = (choice.rule, choice.value)
    return chosen


_PASS, _NORM, _UNGROUPED = Pass(), Norm(), Epsilon(UNGROUPED_EPSILON)
_ZPLUS = AlphaBeta(1.0, None)  # zennit's ZPlus


def rule_table(spec: ExplainerSpec, model: nn.Module, layers: LayerGroups, *, low: Tensor | None,
               high: Tensor | None) -> dict[str, LrpRule]:
    """Module name -> :class:`LrpRule` for every module the composite would hook."""
    chosen = named_rules(spec, layers, low=low, high=high)
    # a transformer spec runs in the gradient x input frame, where activations, norms and sums are
    # the function-level rules of xaiopt.lrp.attention: only weighted layers take module rules
    transformer = spec.attention is not None
    excitation = spec.base == "excitation_backprop"
    if spec.base not in ("lrp", "excitation_backprop"):
        raise ValueError(f"base composite {spec.base!r} (valid: lrp, excitation_backprop)")
    table: dict[str, LrpRule] = {}
    for name, module in model.named_modules():
        if name in chosen:
            rule, value = chosen[name]
            if rule not in RULES:
                raise KeyError(f"the LRP engine has no implementation of rule {rule!r}; use runtime.engine: zennit")
            table[name] = RULES[rule](value, low, high)
        elif transformer:
            if is_weighted(module):
                table[name] = _UNGROUPED
        elif isinstance(module, (Activation, BatchNorm)):
            if not excitation:
                table[name] = _PASS
        elif isinstance(module, (Sum, AvgPool)):
            table[name] = _NORM
        elif is_weighted(module):
            table[name] = _ZPLUS if excitation else _UNGROUPED
    return table


def ungrouped_rules(model: nn.Module) -> dict[str, LrpRule]:
    """Every weighted layer with the rule of ungrouped layers (a transformer's table when no spec is chosen)."""
    return {name: _UNGROUPED for name, module in model.named_modules() if is_weighted(module)}
