"""Layer groups: which Conv/Linear modules share one rule.

Automatic groups follow the model's actual forward order (recorded with hooks on an example
input, not module registration order): the conv layers are split into K contiguous groups of
near-equal size (``conv1`` .. ``convK``, shallow to deep) and all Linear layers form
``classifier``. Explicit groups name modules or shell-style globs.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import torch
from torch import nn
from zennit.types import Convolution, Linear

from xaiopt.config import ExplicitGroup
from xaiopt.errors import ConfigError


def is_weighted(module: nn.Module) -> bool:
    """Conv and Linear modules: the layers that LRP rules are attached to."""
    return isinstance(module, (Convolution, Linear))


def forward_order(model: nn.Module, example_input: torch.Tensor) -> list[str]:
    """Names of the Conv/Linear modules in the order the forward pass first calls them."""
    order: list[str] = []
    seen: set[str] = set()
    handles = []

    def record(name: str):
        def hook(module, args, output):
            if name not in seen:
                seen.add(name)
                order.append(name)
        return hook

    for name, module in model.named_modules():
        if is_weighted(module):
            handles.append(module.register_forward_hook(record(name)))
    try:
        with torch.no_grad():
            model(example_input[:1])
    finally:
        for h in handles:
            h.remove()
    return order


@dataclass(frozen=True)
class LayerGroups:
    """Resolved groups: group name -> module names (forward order), and the first layer's name."""

    groups: dict[str, list[str]]
    first_layer: str | None

    def group_of(self) -> dict[str, str]:
        return {m: g for g, mods in self.groups.items() for m in mods}

    def non_empty(self) -> list[str]:
        return [g for g, mods in self.groups.items() if mods]


def resolve_groups(
    model: nn.Module, example_input: torch.Tensor, spec: int | list[ExplicitGroup]
) -> LayerGroups:
    """Assign the model's Conv/Linear layers to groups.

    Example::

        groups = resolve_groups(model, x[:1], 3)
        groups.groups["conv1"]      # ['features.0', 'features.3']
        groups.first_layer          # 'features.0'
    """
    order = forward_order(model, example_input)
    if not order:
        raise ConfigError("model: no Conv or Linear layer was called in the forward pass; nothing to attach rules to")
    modules = dict(model.named_modules())
    first = order[0]
    if isinstance(spec, int):
        convs = [n for n in order if isinstance(modules[n], Convolution)]
        linears = [n for n in order if isinstance(modules[n], nn.Linear)]
        if len(convs) < spec:
            raise ConfigError(
                f"space.layer_groups: {spec} conv groups asked for, but the model has only {len(convs)} conv "
                f"layers (use at most {max(len(convs), 1)})"
            )
        groups: dict[str, list[str]] = {}
        base, extra = divmod(len(convs), spec)
        start = 0
        for i in range(spec):
            size = base + (1 if i < extra else 0)
            groups[f"conv{i + 1}"] = convs[start:start + size]
            start += size
        groups["classifier"] = linears
        return LayerGroups(groups=groups, first_layer=first)

    groups = {}
    taken: dict[str, str] = {}
    for g in spec:
        members = [n for n in order if any(fnmatch.fnmatchcase(n, pat) for pat in g.modules)]
        unmatched = [pat for pat in g.modules if not any(fnmatch.fnmatchcase(n, pat) for n in order)]
        if unmatched:
            raise ConfigError(
                f"space.layer_groups.{g.name}: {unmatched[0]!r} matches no Conv/Linear layer "
                f"(layers: {', '.join(order[:12])}{', ...' if len(order) > 12 else ''})"
            )
        for n in members:
            if n in taken:
                raise ConfigError(f"space.layer_groups: layer {n!r} is in both {taken[n]!r} and {g.name!r}")
            taken[n] = g.name
        groups[g.name] = members
    return LayerGroups(groups=groups, first_layer=first)
