"""Reading a model's dataflow with torch.fx: tracing, and small predicates over fx nodes."""

from __future__ import annotations

import operator

import torch
from torch import fx, nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from zennit.layer import Sum

from .layers import Concat, GateMul, ThreshReLU

_OUR_LEAVES = (Sum, Concat, GateMul, ThreshReLU)


def torch_base(module: nn.Module) -> type | None:
    """The first class of ``type(module)``'s MRO that torch.nn defines (None for plain modules)."""
    for cls in type(module).__mro__:
        if cls.__module__.startswith("torch.nn.") and cls is not nn.Module:
            return cls
    return None


def has_own_forward(module: nn.Module) -> bool:
    """True for a subclass of a torch.nn layer that overrides ``forward`` (its own padding, ...)."""
    base = torch_base(module)
    return base is not None and type(module).forward is not base.forward


class CanonizationTracer(fx.Tracer):
    """fx tracer whose leaves are the modules LRP rules and merges act on.

    torch.nn modules and the canonization layers are leaves, and so is every subclass of a torch
    Conv or Linear, wherever it is defined: a third-party convolution with its own forward (static
    "same" padding, ...) stays one module, so a rule can attach to it and a merge edits its
    parameters while its forward runs unchanged. A batch norm subclass stays a leaf unless it
    overrides ``forward`` (a fused norm + activation such as timm's ``BatchNormAct2d``): that one is
    traced into, and its functional ``batch_norm`` is turned back into a module by the rewriter.
    """

    def iter(self, obj: fx.Proxy):
        # `for part in torch.split(x, [a, b], 1)` / zip over torch.chunk(x, k): the number of pieces
        # is known when traced, so the pieces are indexable (mixed-kernel convolutions split this way)
        count = _known_pieces(obj.node)
        if count is None:
            return super().iter(obj)
        return iter([obj[i] for i in range(count)])

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        if isinstance(module, _OUR_LEAVES) or isinstance(module, (_ConvNd, nn.Linear)):
            return True
        if isinstance(module, _BatchNorm):
            return not has_own_forward(module)
        return super().is_leaf_module(module, qualified_name)


def _known_pieces(node: fx.Node) -> int | None:
    """How many tensors ``torch.split(x, [sizes])`` or ``torch.chunk(x, k)`` returns, when fixed."""
    if node.op == "call_function" and node.target in (torch.split, torch.functional.split):
        sections = node.args[1] if len(node.args) > 1 else node.kwargs.get("split_size_or_sections")
        return len(sections) if isinstance(sections, (list, tuple)) else None
    if node.op == "call_method" and node.target == "split":
        sections = node.args[1] if len(node.args) > 1 else node.kwargs.get("split_size")
        return len(sections) if isinstance(sections, (list, tuple)) else None
    if (node.op == "call_function" and node.target is torch.chunk) or (
            node.op == "call_method" and node.target == "chunk"):
        chunks = node.args[1] if len(node.args) > 1 else node.kwargs.get("chunks")
        # torch.chunk may return fewer pieces than asked for; only 1 and 2 are always exact
        return chunks if isinstance(chunks, int) and chunks in (1, 2) else None
    return None


def trace(root: nn.Module) -> fx.Graph:
    """The dataflow graph of the module's forward (raises whatever fx raises when it cannot trace).

    That is ``type(root).forward``, unless the instance holds a forward of its own: model ports
    that adapt a library class replace ``forward`` (and rename heads) on the instance, and the class's
    forward would no longer describe what the model computes.
    """
    own = root.__dict__.get("forward")
    if own is None:
        try:
            return CanonizationTracer().trace(root)
        finally:
            _drop_proxies(root)
    function = getattr(own, "__func__", None)
    if function is None or getattr(own, "__self__", None) is not root:
        raise TypeError(f"the instance's forward is {type(own).__name__}, not a method of the module")
    cls = root.__class__
    root.__class__ = type(cls.__name__, (cls,), {"forward": function, "__module__": cls.__module__})
    try:
        return CanonizationTracer().trace(root)
    finally:
        root.__class__ = cls
        _drop_proxies(root)


def _drop_proxies(root: nn.Module) -> None:
    """Remove what the trace left in the modules' own caches: a forward that memoizes a tensor
    (timm's LeViT keeps ``attention_bias_cache[str(device)]``) stored an fx Proxy under a Proxy's
    name. The traced graph computes that tensor itself; the stale Proxy would only break a later
    ``copy.deepcopy`` of the model (it drags the tracer along)."""
    for module in root.modules():
        for key, value in list(vars(module).items()):
            if key in ("_parameters", "_buffers", "_modules"):
                continue
            if isinstance(value, fx.Proxy):
                delattr(module, key)
            elif isinstance(value, dict):
                for entry in [k for k, v in value.items() if isinstance(v, fx.Proxy)
]:
                    del value[entry]


def module_of(root: nn.Module, node: fx.Node) -> nn.Module | None:
    if node.op != "call_module":
        return None
    return root.get_submodule(node.target)


def call_counts(graph: fx.Graph) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            counts[node.target] = counts.get(node.target, 0) + 1
    return counts


def owner_path(node: fx.Node) -> str:
    """Qualified name of the module whose forward produced ``node`` ("" for the root)."""
    stack = node.meta.get("nn_module_stack") or {}
    paths = [key.split("@")[0] for key in stack]
    if node.op == "call_module" and paths and paths[-1] == node.target:
        paths = paths[:-1]
    return paths[-1] if paths else ""


def value_users(node: fx.Node, flow: "TensorFlow") -> list[fx.Node]:
    """The users of ``node`` that consume its values (not ``.size()``, ``.shape``, ``.ndim`` queries,
    nor ``y.reshape_as(node)``, which reads only its shape)."""
    return [user for user in node.users if flow.tensor.get(user, True) and not _shape_only(user, node)]


_SHAPE_OF_OTHER = {"reshape_as", "view_as", "expand_as"}


def _shape_only(user: fx.Node, node: fx.Node) -> bool:
    """``user`` is ``y.reshape_as(node)`` (or view_as / expand_as) with ``node`` only as the template."""
    return (user.op == "call_method" and user.target in _SHAPE_OF_OTHER and len(user.args) == 2
            and user.args[1] is node and user.args[0] is not node and not user.kwargs)


def describe(node: fx.Node) -> str:
    if node.op == "call_module":
        return f"module '{node.target}'"
    if node.op == "call_function":
        return f"function {getattr(node.target, '__name__', node.target)}"
    if node.op == "call_method":
        return f"method .{node.target}()"
    return f"{node.op} '{node.target}'"


_RELU_FUNCTIONS = {torch.relu, torch.relu_, F.relu, F.relu_}
_SIGMOID_FUNCTIONS = {torch.sigmoid, F.sigmoid, F.hardsigmoid, torch.sigmoid_}
_ADD_FUNCTIONS = {operator.add, torch.add, operator.iadd}
_MUL_FUNCTIONS = {operator.mul, torch.mul, operator.imul}
_CAT_FUNCTIONS = {torch.cat, torch.concat, torch.concatenate}
_SIZE_METHODS = {"size", "dim", "numel", "__len__", "tolist", "item", "stride"}


def is_relu(root: nn.Module, node: fx.Node) -> bool:
    if node.op == "call_module":
        return type(module_of(root, node)) is nn.ReLU
    if node.op == "call_function":
        return node.target in _RELU_FUNCTIONS
    return node.op == "call_method" and node.target in ("relu", "relu_")


def is_gate_activation(root: nn.Module, node: fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(module_of(root, node), (nn.Sigmoid, nn.Hardsigmoid))
    if node.op == "call_function":
        return node.target in _SIGMOID_FUNCTIONS
    return node.op == "call_method" and node.target in ("sigmoid", "sigmoid_")


def binary_operands(node: fx.Node, functions: set, methods: tuple[str, ...]) -> tuple[fx.Node, fx.Node] | None:
    """The two node operands of ``a <op> b`` when ``node`` is that op with no extra arguments."""
    if node.op == "call_function" and node.target in functions:
        pass
    elif node.op == "call_method" and node.target in methods:
        pass
    else:
        return None
    if len(node.args) != 2 or node.kwargs:
        return None
    a, b = node.args
    if isinstance(a, fx.Node) and isinstance(b, fx.Node):
        return a, b
    return None


def add_operands(node: fx.Node) -> tuple[fx.Node, fx.Node] | None:
    return binary_operands(node, _ADD_FUNCTIONS, ("add", "__add__"))


def mul_operands(node: fx.Node) -> tuple[fx.Node, fx.Node] | None:
    return binary_operands(node, _MUL_FUNCTIONS, ("mul", "__mul__"))


def cat_operands(node: fx.Node) -> tuple[list[fx.Node], int] | None:
    if node.op != "call_function" or node.target not in _CAT_FUNCTIONS:
        return None
    tensors = node.args[0] if node.args else node.kwargs.get("tensors")
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    if not isinstance(tensors, (list, tuple)) or not isinstance(dim, int):
        return None
    if not all(isinstance(t, fx.Node) for t in tensors):
        return None
    return list(tensors), dim


class TensorFlow:
    """Which nodes carry tensors computed from the input (as opposed to sizes or constants)."""

    def __init__(self, graph: fx.Graph) -> None:
        self.tensor: dict[fx.Node, bool] = {}
        self.from_input: dict[fx.Node, bool] = {}
        for node in graph.nodes:
            inputs = node.all_input_nodes
            if node.op == "placeholder":
                self.tensor[node], self.from_input[node] = True, True
                continue
            self.from_input[node] = any(self.from_input[n] for n in inputs)
            if node.op in ("get_attr", "call_module"):
                self.tensor[node] = True
            elif node.op == "call_method" and node.target in _SIZE_METHODS:
                self.tensor[node] = False
            elif node.op == "call_function" and node.target in (getattr, len):
                self.tensor[node] = False
            elif node.op == "call_function" and node.target is operator.getitem:
                self.tensor[node] = self.tensor.get(node.args[0], False)
            else:
                self.tensor[node] = any(self.tensor[n] for n in inputs)

    def is_signal(self, node: fx.Node) -> bool:
        """A tensor that depends on the model input."""
        return self.tensor.get(node, False) and self.from_input.get(node, False)


def passthrough_kind(root: nn.Module, node: fx.Node, source: fx.Node) -> str | None:
    """How ``node`` maps a per-channel affine input onward, if it commutes with one.

    Returns ``"pool"`` (an average: commutes with any per-channel affine map), ``"flatten"``
    (flatten(1): channel-major features) or ``"identity"``; None when it does not commute.
    """
    if node.op == "call_module":
        module = module_of(root, node)
        if len(node.args) != 1 or node.kwargs:
            return None
        dropout = isinstance(module, nn.modules.dropout._DropoutNd) and not module.training
        if isinstance(module, (nn.Identity,)) or dropout:
            return "identity"
        if isinstance(module, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)):
            return "pool"
        if isinstance(module, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
            padding = module.padding if isinstance(module.padding, tuple) else (module.padding,)
            zero_pad = all(p == 0 for p in padding)
            divisor = getattr(module, "divisor_override", None)
            if divisor is None and (zero_pad or not module.count_include_pad):
                return "pool"
            return None
        if isinstance(module, nn.Flatten) and module.start_dim == 1 and module.end_dim == -1:
            return "flatten"
        return None
    if node.op == "call_function":
        if not node.args or node.args[0] is not source:
            return None
        if node.target in (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d):
            return "pool"
        if node.target in (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d):
            return "pool" if _plain_average(node) else None
        if node.target is torch.mean:
            return "pool" if _spatial_mean(node) else None
        if node.target is torch.flatten:
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            return "flatten" if (start, end) == (1, -1) else None
        if node.target is F.dropout:
            training = node.args[2] if len(node.args) > 2 else node.kwargs.get("training", True)
            return "identity" if training is False else None
        return None
    if node.op != "call_method" or not node.args or node.args[0] is not source:
        return None
    if node.target == "flatten":
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
        return "flatten" if (start, end) == (1, -1) else None
    if node.target == "mean":
        return "pool" if _spatial_mean(node) else None
    if node.target in ("view", "reshape") and _batch_flatten(node):
        return "flatten"
    return None


def token_rows(node: fx.Node, source: fx.Node, features: int) -> bool:
    """``node`` turns ``source``'s tokens into rows and keeps its last dimension of ``features``.

    Token models batch-normalize a Linear's ``(B, N, C)`` output as ``bn(x.flatten(0, 1))`` (timm's
    LeViT): the rows are the tokens and the batch norm's channels are the Linear's output features,
    so the norm is a per-feature affine map of that output. Accepted: ``flatten(0, k)`` with ``k``
    not the last dimension, and ``view`` / ``reshape(-1, features)``. ``flatten(0, 1)`` keeps the last
    dimension on a 3-d input only; on another, the batch norm's channels would not be the features,
    which the canonizer's check on a forward pass catches.
    """
    if not node.args or node.args[0] is not source or node.kwargs.get("out") is not None:
        return False
    if (node.op == "call_method" and node.target == "flatten") or (
            node.op == "call_function" and node.target is torch.flatten):
        start = _argument(node, 1, "start_dim", 0)
        end = _argument(node, 2, "end_dim", -1)
        return start == 0 and isinstance(end, int) and end != -1 and (end >= 0 or end == -2)
    if node.op == "call_method" and node.target in ("view", "reshape"):
        shape = node.args[1:]
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return tuple(shape) == (-1, features) and not node.kwargs
    return False


def _argument(node: fx.Node, index: int, name: str, default):
    return node.args[index] if len(node.args) > index else node.kwargs.get(name, default)


def _plain_average(node: fx.Node) -> bool:
    """F.avg_poolNd without zero padding counted into the average (so it commutes with x -> s x + t)."""
    padding = _argument(node, 3, "padding", 0)
    count_include_pad = _argument(node, 5, "count_include_pad", True)
    divisor = _argument(node, 6, "divisor_override", None)
    paddings = padding if isinstance(padding, (tuple, list)) else (padding,)
    if divisor is not None or not all(isinstance(p, int) for p in paddings):
        return False
    return all(p == 0 for p in paddings) or count_include_pad is False


def _spatial_mean(node: fx.Node) -> bool:
    """``x.mean(dims)`` over spatial dimensions only (never the batch or channel dimension)."""
    dims = _argument(node, 1, "dim", None)
    if dims is None:
        return False
    dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
    return bool(dims) and all(isinstance(d, int) and (d >= 2 or d < 0) for d in dims) and not node.kwargs.get("dtype")


def _batch_flatten(node: fx.Node) -> bool:
    """``x.view(x.size(0), -1)`` / ``x.reshape(n, -1)``: the batch dimension kept, the rest flattened."""
    shape = node.args[1:]
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    if len(shape) != 2 or shape[1] != -1 or node.kwargs:
        return False
    batch = shape[0]
    if isinstance(batch, fx.Node):  # x.size(0) or x.shape[0]
        if batch.op == "call_method" and batch.target == "size":
            return tuple(batch.args[1:]) == (0,)
        if batch.op == "call_function" and batch.target is operator.getitem:
            return batch.args[1] == 0
        return False
    return isinstance(batch, int)
