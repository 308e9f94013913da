"""ExplainerSpec: one point of the search space, and the zennit composite it stands for."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xaiopt.space.groups import LayerGroups
from xaiopt.space.rules import get_rule

if TYPE_CHECKING:  # the composite needs zennit; reading and describing a spec does not
    import torch
    from zennit.core import Composite

# layers that no explicit group names keep the (nearly) conservative LRP-0 behaviour
UNGROUPED_EPSILON = 1e-6


@dataclass(frozen=True)
class GroupRule:
    """The rule of one layer group and its parameter value (None for parameter-free rules)."""

    rule: str
    value: float | None = None

    def describe(self) -> str:
        return self.rule if self.value is None else f"{self.rule}({self.value:g})"


@dataclass(frozen=True)
class ExplainerSpec:
    """Canonize or not, the first layer's rule, and a rule per layer group.

    Example::

        spec = ExplainerSpec(canonize=True, first_layer="zbox",
                             groups={"conv1": GroupRule("gamma", 0.25), "classifier": GroupRule("epsilon", 1e-6)})
        composite = spec.to_composite(groups, low=data.low, high=data.high)
    """

    canonize: bool
    first_layer: str
    groups: dict[str, GroupRule] = field(default_factory=dict)
    # transformers: the rule of the attention (``attnlrp`` | ``cp``); None for a CNN
    attention: str | None = None
    # CNNs: the base composite, what the layers no rule above names get (``lrp`` | ``excitation_backprop``,
    # xaiopt.config.schema.BASES)
    base: str = "lrp"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "canonize": self.canonize,
            "first_layer": self.first_layer,
            "groups": {g: {"rule": r.rule, "value": r.value} for g, r in self.groups.items()},
        }
        if self.attention is not None:
            d["attention"] = self.attention
        if self.base != "lrp":  # absent for lrp: the documents and keys written before the field existed
            d["base"] = self.base
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ExplainerSpec":
        return cls(
            canonize=bool(d["canonize"]),
            first_layer=str(d["first_layer"]),
            groups={g: GroupRule(r["rule"], r.get("value")) for g, r in d["groups"].items()},
            attention=d.get("attention"),
            base=str(d.get("base", "lrp")),
        )

    def describe(self) -> str:
        parts = [f"canonize={'yes' if self.canonize else 'no'}", f"first={self.first_layer}"]
        if self.base != "lrp":
            parts.append(f"base={self.base}")
        if self.attention is not None:
            parts.append(f"attention={self.attention}")
        parts += [f"{g}={r.describe()}" for g, r in self.groups.items()]
        return " ".join(parts)

    def module_rules(self, layers: LayerGroups) -> dict[str, GroupRule]:
        """Module name -> its rule and value: each grouped layer its group's, the first layer the
        first-layer rule unless that is ``same``. The one assignment the zennit composite and
        xaiopt's LRP engine both follow."""
        chosen: dict[str, GroupRule] = {}
        for g, mods in layers.groups.items():
            if not mods:
                continue
            choice = self.groups.get(g)
            if choice is None:
                raise KeyError(f"no rule chosen for layer group {g!r}")
            for m in mods:
                chosen[m] = choice
        if self.first_layer != "same" and layers.first_layer is not None:
            chosen[layers.first_layer] = GroupRule(self.first_layer)
        return chosen

    def layer_hooks(self, layers: LayerGroups, *, low: torch.Tensor | None, high: torch.Tensor | None) -> dict:
        """Module name -> zennit hook for every grouped layer (the first layer's special rule included)."""
        return {m: get_rule(r.rule).hook(r.value, low=low, high=high) for m, r in self.module_rules(layers).items()}

    def to_composite(self, layers: LayerGroups, *, low: torch.Tensor | None = None,
                     high: torch.Tensor | None = None) -> Composite:
        """A zennit composite with this spec's rules on ``layers`` (canonization is the caller's: the
        worker keeps a canonized twin, so no canonizer runs per explain call)."""
        from xaiopt.space.composite import SpecComposite

        hooks = self.layer_hooks(layers, low=low, high=high)
        return SpecComposite(hooks, base=self.base)
