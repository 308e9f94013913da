"""The graph canonizer: one zennit ``Canonizer`` that rewrites a model from its traced dataflow.

``apply(model)`` traces ``type(model).forward`` with torch.fx, merges batch norms into linear
neighbours, inserts explicit modules (Sum, Concat, GateMul, ThreshReLU), and installs the rewritten
forward on the model instance. ``remove()`` undoes every edit, leaving the model bit-identical.
"""

from __future__ import annotations

import types

import torch
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm
from zennit.canonizers import Canonizer

from . import graph as g
from .affine import (
    LINEAR_TYPES,
    batch_norm_affine,
    can_merge_after,
    can_merge_before,
    merge_after,
    merge_before,
    why_not_mergeable,
)
from .changes import Changes, Merge, Rewrite, Skip
from .edits import EditLog
from .functional import modularize
from .layers import Concat, GateMul, Sum, ThreshReLU
from .reparam import merge_reparam

MARKER = "_xaiopt_canonized"


class TraceFailure(Exception):
    """torch.fx could not trace a module's forward."""


_OPTIONS = ("reparam", "merge_after", "merge_before", "thresh_relu", "residual_sum", "concat", "se_gate")


class GraphCanonizer(Canonizer):
    """Function-preserving canonization of any fx-traceable model, as a zennit canonizer.

    Parameters (all keyword, all on by default) switch the individual rewrites:
    ``reparam`` (parallel conv / batch norm / identity branches of one tensor, summed, as one
    convolution: RepVGG, MobileOne, FastViT, RepGhost), ``merge_after`` (BN after Conv/Linear),
    ``merge_before`` (BN feeding Conv/Linear), ``thresh_relu`` (BN -> ReLU -> Conv/Linear),
    ``residual_sum`` (tensor + tensor -> Sum), ``concat`` (torch.cat -> Concat), ``se_gate``
    (signal * sigmoid gate -> GateMul).

    Example::

        from zennit.composites import EpsilonPlus
        composite = EpsilonPlus(canonizers=[GraphCanonizer()])
        with composite.context(model) as modified:
            ...

    When ``type(model).forward`` cannot be traced, the canonizer records why (a ``Skip`` whose
    reason starts with ``torch.fx cannot trace``) and canonizes each child module on its own
    instead, recursively: what is traceable is canonized, the rest runs unchanged.
    :func:`xaiopt.canonize.canonize` turns that record into a warning.
    """

    def __init__(self, **options: bool) -> None:
        unknown = set(options) - set(_OPTIONS)
        if unknown:
            raise TypeError(f"unknown GraphCanonizer options {sorted(unknown)}; valid: {list(_OPTIONS)}")
        self.options = {name: bool(options.get(name, True)) for name in _OPTIONS}
        self.root: nn.Module | None = None
        self.log = EditLog()
        self.changes = Changes()
        self.graph: fx.Graph | None = None
        self.prefix = ""

    def copy(self) -> "GraphCanonizer":
        return self.__class__(**self.options)

    def apply(self, root_module: nn.Module) -> list["GraphCanonizer"]:
        return self._apply(root_module, "")

    def _apply(self, module: nn.Module, prefix: str) -> list["GraphCanonizer"]:
        if getattr(module, MARKER, False):
            return []  # already canonized: type(model).forward would no longer describe it
        instance = self.copy()
        try:
            instance.register(module, prefix)
            return [instance]
        except TraceFailure as failure:
            instance.root, instance.prefix = module, prefix
            instance.changes.skipped.append(Skip(prefix, str(failure)))
            instances = [instance]  # holds only the record; its remove() does nothing
            for name, child in module.named_children():
                if next(child.children(), None) is not None:  # leaves have nothing to merge inside
                    instances += self._apply(child, f"{prefix}.{name}" if prefix else name)
            return instances

    def register(self, root_module: nn.Module, prefix: str = "") -> None:
        self.root = root_module
        self.prefix = prefix
        before = set(root_module.__dict__)
        try:
            graph = g.trace(root_module)
        except Exception as error:  # fx raises many types
            for name in set(root_module.__dict__) - before:
                delattr(root_module, name)
            first_line = (str(error).strip().splitlines() or [""])[0][:300]
            raise TraceFailure(
                f"torch.fx cannot trace {type(root_module).__name__} ({type(error).__name__}: {first_line})"
            ) from error
        try:
            self._adopt_trace_constants(before)
            _Rewriter(root_module, graph, self.options, self.log, self.changes).run()
            self.changes = self.changes.prefixed(prefix)
            graph.lint()
            self.graph = graph
            module = fx.GraphModule(root_module, graph)
            # the generated code reads submodules as attributes of `self`; bound to the model itself
            # it always sees the model's current modules and parameters (after .to(), .double(), ...)
            self.log.set_attr(root_module, "forward", types.MethodType(type(module).forward, root_module))
            self.log.set_attr(root_module, MARKER, True)
        except BaseException:
            self.log.undo()
            raise

    def _adopt_trace_constants(self, before: set[str]) -> None:
        """fx stores tensor constants on the traced module; keep them as buffers so .to() moves them."""
        root = self.root
        for name in sorted(set(root.__dict__) - before):
            value = root.__dict__[name]
            delattr(root, name)
            if isinstance(value, torch.Tensor):
                root.register_buffer(name, value, persistent=False)
                self.log.on_undo(lambda name=name: root._buffers.pop(name, None))
            else:
                self.log.set_attr(root, name, value)

    def remove(self) -> None:
        self.log.undo()


def _out_channels(layer: nn.Module) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


class _Rewriter:
    """One pass over a traced graph: edits the graph, the model and the change record together."""

    def __init__(self, root: nn.Module, graph: fx.Graph, options: dict, log: EditLog, changes: Changes) -> None:
        self.root, self.graph, self.options, self.log, self.changes = root, graph, options, log, changes
        self.counts = g.call_counts(graph)
        self.flow = g.TensorFlow(graph)
        self.new_names: set[str] = set()
        self.reparam_reasons: dict[str, str] = {}  # batch norm -> why its summed branches were not merged

    def run(self) -> None:
        modularize(self)
        self._drop_identities()
        self.counts = g.call_counts(self.graph)
        self.flow = g.TensorFlow(self.graph)
        if self.options["reparam"]:
            # before the batch norm merges: a branch's conv -> BN is read as one affine map here
            self.reparam_reasons = merge_reparam(self)
            self.counts = g.call_counts(self.graph)
            self.flow = g.TensorFlow(self.graph)
        for node in list(self.graph.nodes):
            if node.graph is not self.graph or node.op != "call_module":
                continue
            if isinstance(self._module(node), _BatchNorm):
                self._batch_norm(node)
        for node in list(self.graph.nodes):
            if self.options["residual_sum"] and g.add_operands(node):
                self._residual(node)
            elif self.options["concat"] and g.cat_operands(node):
                self._concat(node)
            elif self.options["se_gate"] and g.mul_operands(node):
                self._gate(node)

    def _drop_identities(self) -> None:
        """Identity and eval-mode dropout compute nothing; without them a batch norm's neighbours
        are adjacent in the graph (timm's fused norms put ``self.drop`` between norm and activation)."""
        for node in list(self.graph.nodes):
            module = self._module(node)
            identity = isinstance(module, nn.Identity) or (
                isinstance(module, nn.modules.dropout._DropoutNd) and not module.training)
            if identity and len(node.args) == 1 and not node.kwargs and isinstance(node.args[0], fx.Node):
                self._drop(node)

    # -- helpers -----------------------------------------------------------------------------------
    def _module(self, node: fx.Node) -> nn.Module | None:
        return g.module_of(self.root, node)

    def _skip(self, target: str, reason: str) -> None:
        self.changes.skipped.append(Skip(target, reason))

    def _add_module(self, node: fx.Node, stem: str, module: nn.Module) -> str:
        owner = g.owner_path(node)
        parent = self.root.get_submodule(owner) if owner else self.root
        name, index = stem, 0
        while hasattr(parent, name) or f"{owner}.{name}" in self.new_names:
            index += 1
            name = f"{stem}_{index}"
        reference = next(self.root.parameters(), None)
        if reference is None:
            reference = next(self.root.buffers(), None)
        if reference is not None:
            module.to(device=reference.device)
        self.log.set_attr(parent, name, module)
        path = f"{owner}.{name}" if owner else name
        self.new_names.add(path)
        return path

    def _replace(self, node: fx.Node, target: str, args: tuple) -> fx.Node:
        with self.graph.inserting_after(node):
            new = self.graph.call_module(target, args)
        new.meta = dict(node.meta)
        for table in (self.flow.tensor, self.flow.from_input):
            table[new] = table.get(node, True)
        node.replace_all_uses_with(new)
        self.graph.erase_node(node)
        return new

    def _drop(self, node: fx.Node) -> None:
        node.replace_all_uses_with(node.args[0])
        self.graph.erase_node(node)

    # -- batch norm --------------------------------------------------------------------------------
    def _batch_norm(self, node: fx.Node) -> None:
        bn = self._module(node)
        name = node.target
        reason = why_not_mergeable(bn)
        if reason is None and self.counts[name] != 1:
            reason = "batch norm module is called more than once"
        if reason is None and (len(node.args) != 1 or node.kwargs):
            reason = "batch norm called with extra arguments"
        if reason:
            self._skip(name, reason)
            return
        scale, shift = batch_norm_affine(bn)
        source = node.args[0]

        source = self._through_token_rows(source, bn)
        why_after = self._why_not_after(source)
        if self.options["merge_after"] and why_after is None:
            layer = self._module(source)
            merge_after(layer, scale, shift, self.log)
            self._drop(node)
            self.changes.merges.append(Merge(name, (source.target,), "after"))
            return
        parts = self._concat_parts(source, scale.numel())
        if self.options["merge_after"] and isinstance(parts, list):
            start = 0
            for part in parts:
                width = _out_channels(self._module(part))
                merge_after(self._module(part), scale[start:start + width], shift[start:start + width], self.log)
                start += width
            self._drop(node)
            self.changes.merges.append(Merge(name, tuple(p.target for p in parts), "after_concat"))
            return

        consumers = self._consumers(node, scale.numel(), isinstance(bn, nn.BatchNorm1d))
        if self.options["merge_before"] and isinstance(consumers, list):
            kinds = self._merge_into(consumers, scale, shift)
            self._drop(node)
            kind = "before_bias_map" if "bias_map" in kinds else "before"
            self.changes.merges.append(Merge(name, tuple(c.target for c in consumers), kind))
            return

        users = g.value_users(node, self.flow)
        relu_consumers: list[fx.Node] | str = "batch norm does not feed a ReLU"
        if len(users) == 1 and g.is_relu(self.root, users[0]):
            relu_consumers = self._consumers(users[0], scale.numel(), isinstance(bn, nn.BatchNorm1d))
        if self.options["thresh_relu"] and isinstance(relu_consumers, list):
            self._thresh_relu(node, users[0], relu_consumers, scale, shift)
            return

        reasons = [f"no preceding linear layer ({why_after})"]
        if isinstance(parts, str) and isinstance(source, fx.Node) and g.cat_operands(source):
            reasons.append(f"not split into the concatenated layers ({parts})")
        reasons.append(f"output not only into linear layers ({consumers})" if isinstance(consumers, str) else "")
        if len(users) == 1 and g.is_relu(self.root, users[0]) and isinstance(relu_consumers, str):
            reasons.append(f"ReLU output not only into linear layers ({relu_consumers})")
        if self.options["reparam"]:
            reasons.append(self.reparam_reasons.get(name, ""))
        self._skip(name, "; ".join(r for r in reasons if r) or "rewrite disabled by options")

    def _through_token_rows(self, source: fx.Node, bn: nn.Module) -> fx.Node:
        """The Linear behind ``bn(linear(x).flatten(0, 1))`` when only that reshape lies between
        them (its rows are tokens, the norm's channels the Linear's features); else ``source``."""
        if not (isinstance(bn, nn.BatchNorm1d) and isinstance(source, fx.Node) and source.args):
            return source
        layer = source.args[0]
        if not (isinstance(layer, fx.Node) and layer.op == "call_module"):
            return source
        module = self._module(layer)
        if not (isinstance(module, nn.Linear) and module.out_features == bn.num_features):
            return source
        if not g.token_rows(source, layer, module.out_features):
            return source
        if len(g.value_users(source, self.flow)) != 1:
            return source
        return layer

    def _why_not_after(self, source: fx.Node) -> str | None:
        if not isinstance(source, fx.Node) or source.op != "call_module":
            return f"input comes from {g.describe(source) if isinstance(source, fx.Node) else source!r}"
        reason = can_merge_after(self._module(source))
        if reason:
            return reason
        if self.counts[source.target] != 1:
            return f"layer '{source.target}' is called more than once"
        if len(g.value_users(source, self.flow)) != 1:
            return f"output of '{source.target}' is also used elsewhere"
        return None

    def _concat_parts(self, source: fx.Node, channels: int) -> list[fx.Node] | str:
        """The layers whose outputs ``torch.cat(..., 1)`` joins into ``source`` (mixed kernel sizes,
        grouped branches), when each feeds only the concatenation; a batch norm after it splits."""
        if not isinstance(source, fx.Node) or not g.cat_operands(source):
            return "input is not a concatenation"
        tensors, dim = g.cat_operands(source)
        if dim != 1 or len(g.value_users(source, self.flow)) != 1:
            return "concatenation is not along channels or is also used elsewhere"
        for part in tensors:
            if self._why_not_after(part) is not None or tensors.count(part) != 1:
                return f"concatenated {g.describe(part)} is not a layer feeding only the concatenation"
        if sum(_out_channels(self._module(p)) for p in tensors) != channels:
            return "concatenated channels do not add up to the batch norm's"
        return tensors

    def _consumers(self, node: fx.Node, channels: int, is_1d: bool, flattened: bool = False) -> list[fx.Node] | str:
        """The linear layers that consume ``node`` through affine-commuting ops only, or why not."""
        found: list[fx.Node] = []
        users = g.value_users(node, self.flow)
        if not users:
            return "output unused"
        for user in users:
            module = self._module(user)
            if isinstance(module, LINEAR_TYPES) and user.args == (node,) and not user.kwargs:
                if self.counts[user.target] != 1:
                    return f"layer '{user.target}' is called more than once"
                is_linear = isinstance(module, nn.Linear)
                if is_linear and not (flattened or (is_1d and module.in_features == channels)):
                    return f"Linear '{user.target}' does not act on the channel dimension"
                if not is_linear and flattened:
                    return f"convolution '{user.target}' after a flatten"
                reason = can_merge_before(module, channels)
                if reason:
                    return reason
                found.append(user)
                continue
            kind = g.passthrough_kind(self.root, user, node)
            if kind is None:
                return f"feeds {g.describe(user)}"
            deeper = self._consumers(user, channels, is_1d, flattened or kind == "flatten")
            if isinstance(deeper, str):
                return deeper
            found.extend(deeper)
        return found

    def _merge_into(self, consumers: list[fx.Node], scale: torch.Tensor, shift: torch.Tensor) -> list[str]:
        kinds = []
        for consumer in consumers:
            parent_name, _, child = consumer.target.rpartition(".")
            parent = self.root.get_submodule(parent_name) if parent_name else self.root
            kinds.append(merge_before(self._module(consumer), scale, shift, self.log, parent, child))
        return kinds

    def _thresh_relu(
        self, bn_node: fx.Node, relu_node: fx.Node, consumers: list[fx.Node], scale: torch.Tensor, shift: torch.Tensor
    ) -> None:
        # relu(s*x + t) = s*h(x) + t, h(x) = max(x, -t/s) for s > 0 and min(x, -t/s) for s < 0;
        # where s = 0 (or -t/s overflows) the output is the constant max(t, 0): h = 0, s := 0.
        with torch.no_grad():
            threshold = -shift / scale
            finite = torch.isfinite(threshold) & (scale != 0)
            direction = torch.where(finite, torch.sign(scale), torch.zeros_like(scale))
            threshold = torch.where(finite, threshold, torch.zeros_like(threshold))
            eff_scale = torch.where(finite, scale, torch.zeros_like(scale))
            eff_shift = torch.where(finite, shift, shift.clamp(min=0))
        bn = self._module(bn_node)
        dtype = bn.running_mean.dtype
        module = ThreshReLU(threshold.to(dtype), direction.to(dtype))
        path = self._add_module(relu_node, f"{bn_node.target.rpartition('.')[2]}_threshrelu", module)
        self._replace(relu_node, path, (bn_node.args[0],))
        bn_node.replace_all_uses_with(bn_node.args[0])  # shape queries: the same before and after
        self.graph.erase_node(bn_node)
        kinds = self._merge_into(consumers, eff_scale, eff_shift)
        kind = "threshrelu"
        self.changes.merges.append(Merge(bn_node.target, tuple(c.target for c in consumers), kind))
        self.changes.rewrites.append(
            Rewrite("threshrelu", path, f"{bn_node.target} -> ReLU rewritten; {int((direction == 0).sum())} "
                    f"constant channels; merged as {'/'.join(sorted(set(kinds)))}")
        )

    # -- explicit modules --------------------------------------------------------------------------
    def _residual(self, node: fx.Node) -> None:
        a, b = g.add_operands(node)
        if not (self.flow.is_signal(a) and self.flow.is_signal(b)):
            return  # a bias or size arithmetic, not a merge of two signal paths
        path = self._add_module(node, "canonizer_sum", Sum(dim=-1))
        with self.graph.inserting_before(node):
            pair = self.graph.call_function(torch.broadcast_tensors, (a, b))
            stacked = self.graph.call_function(torch.stack, (pair, -1))
        self._replace(node, path, (stacked,))
        self.changes.rewrites.append(Rewrite("residual_sum", path, f"{a.name} + {b.name}"))

    def _concat(self, node: fx.Node) -> None:
        tensors, dim = g.cat_operands(node)
        if not all(self.flow.is_signal(t) for t in tensors):
            return
        path = self._add_module(node, "canonizer_concat", Concat(dim))
        self._replace(node, path, tuple(tensors))
        self.changes.rewrites.append(Rewrite("concat", path, f"{len(tensors)} tensors along dim {dim}"))

    def _gate(self, node: fx.Node) -> None:
        a, b = g.mul_operands(node)
        a_gate, b_gate = g.is_gate_activation(self.root, a), g.is_gate_activation(self.root, b)
        if a_gate == b_gate or not (self.flow.is_signal(a) and self.flow.is_signal(b)):
            return
        signal, gate = (b, a) if a_gate else (a, b)
        path = self._add_module(node, "canonizer_gate", GateMul())
        self._replace(node, path, (signal, gate))
        self.changes.rewrites.append(Rewrite("se_gate", path, f"{signal.name} * {gate.name}"))
