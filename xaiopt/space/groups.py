"""Layer groups: which Conv/Linear modules share one rule.

Automatic groups follow the model's actual forward order (recorded with hooks on an example
input, not module registration order): the conv layers are split into K contiguous groups of
near-equal size (``conv1`` .. ``convK``, shallow to deep) and all Linear layers form
``classifier``. For a model that runs attention, ``K`` groups its blocks by depth (``blocks1`` ..
``blocksK``, plus ``head``), and ``{blocks: K, sublayers: true}`` splits each of those by the part a
Linear plays in its block (``qkv``, ``proj``, ``fc1``, ``fc2``, ``other``; measured by running,
xaiopt/space/sublayers.py). Explicit groups name modules or shell-style globs.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xaiopt.config import BlockGroups, ExplicitGroup
from xaiopt.errors import ConfigError

if TYPE_CHECKING:  # resolving groups runs the model; the resolved groups are read without torch
    import torch
    from torch import nn


def is_weighted(module: nn.Module) -> bool:
    """Conv and Linear modules: the layers that LRP rules are attached to."""
    from zennit.types import Convolution, Linear

    return isinstance(module, (Convolution, Linear))


def forward_order(model: nn.Module, example_input: torch.Tensor) -> list[str]:
    """Names of the Conv/Linear modules in the order the forward pass first calls them."""
    import torch

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
    # the model runs attention (measured on a forward pass): its relevance needs the transformer rules
    transformer: bool = False

    def group_of(self) -> dict[str, str]:
        return {m: g for g, mods in self.groups.items() for m in mods}

    def non_empty(self) -> list[str]:
        return [g for g, mods in self.groups.items() if mods]


def resolve_groups(
    model: nn.Module, example_input: torch.Tensor, spec: int | list[ExplicitGroup] | BlockGroups
) -> LayerGroups:
    """Assign the model's Conv/Linear layers to groups.

    Example::

        groups = resolve_groups(model, x[:1], 3)
        groups.groups["conv1"]      # ['features.0', 'features.3']
        groups.first_layer          # 'features.0'
    """
    from torch import nn
    from zennit.types import Convolution

    from xaiopt.canonize.operations import attention_calls
    from xaiopt.space.sublayers import sublayer_kinds

    order = forward_order(model, example_input)
    if not order:
        raise ConfigError("model: no Conv or Linear layer was called in the forward pass; nothing to attach rules to")
    modules = dict(model.named_modules())
    first = order[0]
    transformer = attention_calls(model, example_input) > 0
    if isinstance(spec, BlockGroups):
        if not transformer:
            raise ConfigError("space.layer_groups: {blocks, sublayers} groups a transformer's blocks, but the model "
                              "runs no attention (measured on a forward pass); give an integer (conv groups) or "
                              "named groups")
        by_depth = _block_groups(model, order, spec.blocks)
        if not spec.sublayers:
            return LayerGroups(groups=by_depth, first_layer=first, transformer=True)
        kinds = sublayer_kinds(model, example_input, order)
        groups = {name: [] for name in spec.names()}
        for depth, members in by_depth.items():
            for n in members:
                if depth == "head":
                    groups["head"].append(n)
                else:
                    groups[kinds[n] if spec.blocks == 1 else f"{depth}_{kinds[n]}"].append(n)
        return LayerGroups(groups=groups, first_layer=first, transformer=True)
    if isinstance(spec, int) and transformer:
        return LayerGroups(groups=_block_groups(model, order, spec), first_layer=first, transformer=True)
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
        return LayerGroups(groups=groups, first_layer=first, transformer=transformer)

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
    return LayerGroups(groups=groups, first_layer=first, transformer=transformer)


def _block_groups(model: nn.Module, order: list[str], k: int) -> dict[str, list[str]]:
    """A transformer's weighted layers by depth: its blocks (the children of the container whose most
    children hold weighted layers, e.g. ``blocks`` or ``encoder.layers``) split into ``k`` contiguous
    groups ``blocks1`` .. ``blocksK`` (the layers before the first block, the patch embedding, join
    ``blocks1``), and the layers after the last block in ``head``."""
    blocks: list[str] = []
    for name, module in model.named_modules():
        if not name:  # the model's own children are its stages (embedding, blocks, head), not blocks
            continue
        children = [f"{name}.{c}" for c, _ in module.named_children()]
        # a block holds weighted layers; a child that is one is a layer of a block (q, k, v, ...)
        running = [c for c in children if any(n.startswith(c + ".") for n in order)]
        if len(running) > len(blocks):
            blocks = running
    if len(blocks) < 2:
        raise ConfigError("space.layer_groups: the model runs attention but no container of blocks was found "
                          "(a module whose children are the blocks); name the groups explicitly: "
                          "[{name: ..., modules: [...]}]")
    if len(blocks) < k:
        raise ConfigError(f"space.layer_groups: {k} block groups asked for, but the transformer has only "
                          f"{len(blocks)} blocks (use at most {len(blocks)})")
    block_of = {}
    for n in order:
        for i, b in enumerate(blocks):
            if n == b or n.startswith(b + "."):
                block_of[n] = i
    first_block = min(order.index(n) for n in block_of)
    last_block = max(order.index(n) for n in block_of)
    base, extra = divmod(len(blocks), k)
    bounds, start = [], 0
    for i in range(k):
        start += base + (1 if i < extra else 0)
        bounds.append(start)
    groups: dict[str, list[str]] = {f"blocks{i + 1}": [] for i in range(k)}
    groups["head"] = []
    for position, n in enumerate(order):
        if n in block_of:
            groups[f"blocks{next(i for i, b in enumerate(bounds) if block_of[n] < b) + 1}"].append(n)
        elif position < first_block:
            groups["blocks1"].append(n)
        elif position > last_block:
            groups["head"].append(n)
        else:  # a weighted layer between blocks (a downsampling stage of a hierarchical model)
            groups[f"blocks{next(i for i, b in enumerate(bounds) if _block_before(order, block_of, position) < b) + 1}"
                   ].append(n)
    return groups


def _block_before(order: list[str], block_of: dict[str, int], position: int) -> int:
    return max(block_of[n] for n in order[:position] if n in block_of)
