"""Re-parameterized branches: parallel affine maps of one tensor, summed, become one convolution.

RepVGG, MobileOne, FastViT (RepMixer, MobileOne stem, large-kernel patch embedding) and RepGhost
train with several branches of one input whose outputs are added::

    y = bn1(conv3x3(x)) + bn2(conv1x1(x)) + bn3(x)            # RepVGG
    y = x + gamma * (mixer(x) - norm(x))                      # FastViT's RepMixer

Every branch is an affine map of ``x`` (a convolution, a batch norm, the identity, a constant
per-channel scale), so the sum is one affine map of ``x``: one convolution, the deploy-time form
these models were designed for. The expression is read off the traced graph, not off class names:
starting from an addition or subtraction, operands are followed through additions,
subtractions, negations, per-channel constant scales and biases, batch norms (eval mode) and
convolutions; anything else (a ReLU, a product of two signals) ends a branch as the identity of
that tensor. When all branches read the same tensor and at least one is a convolution, the sum is
replaced by a new ``canonizer_reparam`` convolution of that tensor: the largest kernel, smaller
kernels zero-padded centred, identity and batch-norm branches a centred diagonal kernel, grouped
convolutions expanded to the coarsest common grouping. Stride, dilation, padding (offset centred)
and padding mode must agree; otherwise the sum is left alone with the reason. Weights are computed
in float64 and cast back; no existing parameter is edited (the branch modules stay in the model,
unused), so ``remove()`` restores the model exactly.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm

from . import graph as g
from .affine import CONV_TYPES, batch_norm_affine, why_not_mergeable
from .changes import Merge, Rewrite, Skip

if TYPE_CHECKING:
    from .canonizer import _Rewriter

_ADD = ({operator.add, torch.add}, ("add", "__add__", "__radd__"))
_SUB = ({operator.sub, torch.sub, torch.subtract}, ("sub", "subtract", "__sub__"))
_MUL = ({operator.mul, torch.mul, torch.multiply}, ("mul", "multiply", "__mul__", "__rmul__"))
_DIV = ({operator.truediv, torch.div, torch.true_divide}, ("div", "true_divide", "__truediv__"))
_NEG = ({operator.neg, torch.neg, torch.negative}, ("neg", "negative", "__neg__"))
_BATCH_NORMS = {nn.BatchNorm1d: 1, nn.BatchNorm2d: 2, nn.BatchNorm3d: 3}
# a tensor drawn afresh on every call is not a constant, even where it does not depend on the input
_RANDOM = ("rand", "normal", "bernoulli", "multinomial", "poisson", "dropout", "empty")


class _NotAffine(Exception):
    """The expression below a node is not an affine map of one tensor: the node stays as it is."""


@dataclass
class _Branch:
    conv: fx.Node | None  # None: the identity of the form's base
    scale: torch.Tensor  # float64, () or (channels,): per output channel
    norms: list[str] = field(default_factory=list)  # batch norms folded into this branch


@dataclass
class _Form:
    """``sum_i scale_i * branch_i(base) + bias``, and the graph nodes that compute it."""

    base: fx.Node
    branches: list[_Branch]
    bias: torch.Tensor  # float64, () or (channels,)
    nodes: list[fx.Node] = field(default_factory=list)  # absorbed: erased once merged
    constants: list[fx.Node] = field(default_factory=list)  # constant operands (erased when unused)
    trailing: set[int] = field(default_factory=set)  # spatial dims a per-channel constant implies
    ranks: set[int] = field(default_factory=set)  # dimensions of the constants
    spatial: set[int] = field(default_factory=set)  # spatial dims the batch norms imply

    def scaled(self, factor: torch.Tensor) -> "_Form":
        for branch in self.branches:
            branch.scale = branch.scale * factor
        self.bias = self.bias * factor
        return self

    def plus(self, other: "_Form") -> "_Form":
        if other.base is not self.base:
            raise _Mixed(self, other)
        self.branches += other.branches
        self.bias = self.bias + other.bias
        self.nodes += other.nodes
        self.constants += other.constants
        self.trailing |= other.trailing
        self.ranks |= other.ranks
        self.spatial |= other.spatial
        return self


class _Mixed(_NotAffine):
    """Branches of different tensors meet in one sum."""

    def __init__(self, a: _Form, b: _Form) -> None:
        super().__init__("branches of different inputs")
        self.forms = (a, b)


def _scalar(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float64)


def _matches(node: fx.Node, spec: tuple[set, tuple[str, ...]]) -> bool:
    functions, methods = spec
    if node.op == "call_function":
        return node.target in functions
    return node.op == "call_method" and node.target in methods


class _Reader:
    """Reads the affine expression below a sum (see the module docstring)."""

    def __init__(self, rw: "_Rewriter") -> None:
        self.rw = rw

    def constant(self, value: Any) -> tuple[torch.Tensor, fx.Node | None] | None:
        """``value`` as a float64 tensor when it does not depend on the input, else None."""
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)):
            return _scalar(float(value)), None
        if not isinstance(value, fx.Node) or self.rw.flow.from_input.get(value, True):
            return None
        try:
            tensor = self._evaluate(value, 0)
        except Exception:  # anything not evaluable here is not a constant we can fold
            return None
        if isinstance(tensor, bool) or not isinstance(tensor, (int, float, torch.Tensor)):
            return None
        if isinstance(tensor, torch.Tensor) and not tensor.is_floating_point():
            return None
        return torch.as_tensor(tensor).detach().to(torch.float64, copy=True).cpu(), value

    def _evaluate(self, node: Any, depth: int) -> Any:
        if isinstance(node, (list, tuple)):
            return type(node)(self._evaluate(n, depth) for n in node)
        if not isinstance(node, fx.Node):
            return node
        if depth > 16:
            raise _NotAffine("constant too deep")
        if node.op == "get_attr":
            value: Any = self.rw.root
            for part in str(node.target).split("."):
                value = getattr(value, part)
            return value
        name = getattr(node.target, "__name__", str(node.target))
        if node.op not in ("call_function", "call_method") or name.endswith("_") or any(
                word in name for word in _RANDOM):
            raise _NotAffine("not a pure constant")
        args = self._evaluate(node.args, depth + 1)
        kwargs = {k: self._evaluate(v, depth + 1) for k, v in node.kwargs.items()}
        with torch.no_grad():
            if node.op == "call_method":
                return getattr(args[0], str(node.target))(*args[1:], **kwargs)
            return node.target(*args, **kwargs)  # type: ignore[operator]

    def _channel_factor(self, form: _Form, value: tuple[torch.Tensor, fx.Node | None]) -> torch.Tensor:
        """A constant as a per-channel vector (or a scalar); its shape must broadcast per channel."""
        tensor, node = value
        if node is not None:
            form.constants.append(node)
        form.ranks.add(tensor.dim())
        if tensor.numel() == 1:
            return tensor.reshape(())
        sizes = list(tensor.shape)
        big = [i for i, s in enumerate(sizes) if s != 1]
        if len(big) != 1:
            raise _NotAffine("a constant is not per channel")
        form.trailing.add(len(sizes) - 1 - big[0])
        return tensor.reshape(-1)

    def read(self, node: fx.Node, root: bool = False) -> _Form:
        """The form of ``node``; a node that is not an affine operation is the identity of itself."""
        rw = self.rw
        if not root and len(g.value_users(node, rw.flow)) != 1:
            return self._leaf(node)
        try:
            form = self._operation(node)
        except _Mixed:
            if root:
                raise
            return self._leaf(node)
        except (_NotAffine, RuntimeError):
            if root:
                raise
            return self._leaf(node)
        if form is None:
            if root:
                raise _NotAffine("not a sum")
            return self._leaf(node)
        form.nodes.append(node)
        return form

    def _leaf(self, node: fx.Node) -> _Form:
        return _Form(node, [_Branch(None, _scalar(1.0))], _scalar(0.0))

    def _operation(self, node: fx.Node) -> _Form | None:
        rw = self.rw
        if node.op == "call_module":
            module = rw._module(node)
            if len(node.args) != 1 or node.kwargs or not isinstance(node.args[0], fx.Node):
                return None
            source = node.args[0]
            if isinstance(module, CONV_TYPES):
                return _Form(source, [_Branch(node, _scalar(1.0))], _scalar(0.0))
            if isinstance(module, _BatchNorm) and why_not_mergeable(module) is None:
                form = self.read(source)
                scale, shift = batch_norm_affine(module)
                form.scaled(scale.cpu())
                form.bias = form.bias + shift.cpu()
                for branch in form.branches:
                    branch.norms.append(str(node.target))
                dims = _BATCH_NORMS.get(g.torch_base(module))  # type: ignore[arg-type]
                if dims is not None and dims > 1:
                    form.spatial.add(dims)
                return form
            return None
        if node.op not in ("call_function", "call_method") or node.kwargs:
            return None
        args = node.args
        if _matches(node, _NEG) and len(args) == 1 and isinstance(args[0], fx.Node):
            return self.read(args[0]).scaled(_scalar(-1.0))
        if len(args) != 2:
            return None
        a, b = args
        signal_a = isinstance(a, fx.Node) and rw.flow.is_signal(a)
        signal_b = isinstance(b, fx.Node) and rw.flow.is_signal(b)
        if _matches(node, _ADD) or _matches(node, _SUB):
            sign = -1.0 if _matches(node, _SUB) else 1.0
            if signal_a and signal_b:
                return self.read(a).plus(self.read(b).scaled(_scalar(sign)))
            if signal_a or signal_b:
                signal, other = (a, b) if signal_a else (b, a)
                value = self.constant(other)
                if value is None:
                    return None
                form = self.read(signal)  # type: ignore[arg-type]
                shift = self._channel_factor(form, value)
                if sign < 0 and signal_b:  # c - x
                    return self._const_minus(form, shift)
                form.bias = form.bias + sign * shift
                return form
            return None
        if _matches(node, _MUL) and signal_a != signal_b:
            signal, other = (a, b) if signal_a else (b, a)
            value = self.constant(other)
            if value is None:
                return None
            form = self.read(signal)  # type: ignore[arg-type]
            return form.scaled(self._channel_factor(form, value))
        if _matches(node, _DIV) and signal_a and not signal_b:
            value = self.constant(b)
            if value is None:
                return None
            form = self.read(a)  # type: ignore[arg-type]
            return form.scaled(1.0 / self._channel_factor(form, value))
        return None

    @staticmethod
    def _const_minus(form: _Form, shift: torch.Tensor) -> _Form:
        form.scaled(_scalar(-1.0))
        form.bias = form.bias + shift
        return form


@dataclass(frozen=True)
class _Geometry:
    """The one convolution that computes the whole sum."""

    cls: type
    in_channels: int
    out_channels: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    padding_mode: str
    dtype: torch.dtype
    device: torch.device


def _padding(conv: nn.Module) -> tuple[int, ...] | None:
    """Symmetric padding per spatial dimension (None for an asymmetric ``padding='same'``)."""
    padding = conv.padding
    nd = len(conv.kernel_size)
    if padding == "valid":
        return (0,) * nd
    if padding == "same":
        totals = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
        return None if any(t % 2 for t in totals) else tuple(t // 2 for t in totals)
    return tuple(padding)


def _describe(rw: "_Rewriter", branch: _Branch) -> str:
    if branch.conv is None:
        return " -> ".join(branch.norms) + " [identity]" if branch.norms else "identity"
    module = rw._module(branch.conv)
    return " -> ".join([f"{branch.conv.target} [{'x'.join(map(str, module.kernel_size))}]", *branch.norms])


def _tensor(node: fx.Node) -> str:
    """The tensor the branches read, as a reader finds it: the module that computed it, if any."""
    if node.op == "placeholder":
        return f"the input '{node.name}'"
    return f"'{node.target}'" if node.op == "call_module" else f"'{node.name}'"


def _geometry(rw: "_Rewriter", form: _Form) -> _Geometry | str:
    convs = [(str(b.conv.target), rw._module(b.conv)) for b in form.branches if b.conv is not None]
    identity = any(b.conv is None for b in form.branches)
    for name, conv in convs:
        if g.has_own_forward(conv):
            return f"convolution '{name}' ({type(conv).__name__}) has its own forward"
    if len({g.torch_base(conv) for _, conv in convs}) != 1:
        return "convolutions of different dimensionality"
    nd = len(convs[0][1].kernel_size)
    if form.trailing - {nd} or (form.ranks and max(form.ranks) > nd + 2):
        return "a constant scale or bias is not per channel"
    if form.spatial - {nd}:
        return "a batch norm of another dimensionality"
    if len({conv.in_channels for _, conv in convs}) != 1 or len({conv.out_channels for _, conv in convs}) != 1:
        return "the convolutions differ in their channel counts"
    in_channels, out_channels = convs[0][1].in_channels, convs[0][1].out_channels
    if identity and in_channels != out_channels:
        return f"an identity branch is added to convolutions from {in_channels} to {out_channels} channels"
    strides = {name: tuple(conv.stride) for name, conv in convs}
    if len(set(strides.values())) != 1:
        return "branches differ in stride (" + ", ".join(f"'{n}': {s}" for n, s in strides.items()) + ")"
    stride = next(iter(strides.values()))
    if identity and any(s != 1 for s in stride):
        return f"an identity branch is added to convolutions of stride {stride}"
    kernel = tuple(max(conv.kernel_size[d] for _, conv in convs) for d in range(nd))
    dilation = []
    for d in range(nd):
        used = {conv.dilation[d] for _, conv in convs if conv.kernel_size[d] > 1}
        if len(used) > 1:
            return "branches differ in dilation (" + ", ".join(f"'{n}': {tuple(c.dilation)}" for n, c in convs) + ")"
        dilation.append(used.pop() if used else 1)
    paddings = {}
    for name, conv in convs:
        own = _padding(conv)
        if own is None:
            return f"convolution '{name}' pads asymmetrically (padding='same', even kernel)"
        margins = [kernel[d] - conv.kernel_size[d] for d in range(nd)]
        if any(m % 2 for m in margins):
            return f"kernel of '{name}' cannot be centred in {kernel} (sizes differ by an odd number)"
        paddings[name] = tuple(own[d] + dilation[d] * margins[d] // 2 for d in range(nd))
    if len(set(paddings.values())) != 1:
        return "branches are not aligned: their paddings do not centre the kernels (" + ", ".join(
            f"'{n}': {tuple(_padding(c) or ())}" for n, c in convs) + ")"
    padding = next(iter(paddings.values()))
    if identity and (any(k % 2 == 0 for k in kernel)
                     or padding != tuple(dilation[d] * (kernel[d] - 1) // 2 for d in range(nd))):
        return f"an identity branch does not line up with the kernel centre (kernel {kernel}, padding {padding})"
    modes = {conv.padding_mode for _, conv in convs if any(_padding(conv) or ())}
    if len(modes) > 1:
        return f"branches differ in padding mode ({', '.join(sorted(modes))})"
    groups = math.gcd(*(conv.groups for _, conv in convs))
    weight = convs[0][1].weight
    return _Geometry(g.torch_base(convs[0][1]), in_channels, out_channels, kernel, stride, padding,  # type: ignore[arg-type]
                     tuple(dilation), groups, modes.pop() if modes else "zeros", weight.dtype, weight.device)


def _regroup(weight: torch.Tensor, groups: int, coarse: int, in_channels: int) -> torch.Tensor:
    """A grouped weight as the weight of a convolution with ``coarse`` groups (``coarse`` divides
    ``groups``): each block sits at its input channels, zeros elsewhere."""
    if groups == coarse:
        return weight
    out_channels = weight.shape[0]
    per_in, per_coarse_in = in_channels // groups, in_channels // coarse
    rows, coarse_rows = out_channels // groups, out_channels // coarse
    result = weight.new_zeros(out_channels, per_coarse_in, *weight.shape[2:])
    for j in range(groups):
        start = j * rows
        offset = j * per_in - (start // coarse_rows) * per_coarse_in
        result[start:start + rows, offset:offset + per_in] = weight[start:start + rows]
    return result


def _centred(weight: torch.Tensor, kernel: tuple[int, ...]) -> torch.Tensor:
    if tuple(weight.shape[2:]) == kernel:
        return weight
    result = weight.new_zeros(*weight.shape[:2], *kernel)
    window = tuple(slice((big - k) // 2, (big - k) // 2 + k) for big, k in zip(kernel, weight.shape[2:]))
    result[(slice(None), slice(None), *window)] = weight
    return result


def _weights(rw: "_Rewriter", form: _Form, geo: _Geometry) -> tuple[torch.Tensor, torch.Tensor]:
    """The merged weight and bias, in float64."""
    out_channels, per_group = geo.out_channels, geo.in_channels // geo.groups
    weight = torch.zeros(out_channels, per_group, *geo.kernel, dtype=torch.float64)
    bias = torch.zeros(out_channels, dtype=torch.float64)
    spatial = [1] * len(geo.kernel)
    for branch in form.branches:
        scale = torch.broadcast_to(branch.scale, (out_channels,))
        if branch.conv is None:
            rows = torch.arange(out_channels)
            centre = [torch.full_like(rows, (k - 1) // 2) for k in geo.kernel]
            weight.index_put_((rows, rows % per_group, *centre), scale.clone(), accumulate=True)
            continue
        conv = rw._module(branch.conv)
        own = conv.weight.detach().to("cpu", torch.float64)
        own = _centred(_regroup(own, conv.groups, geo.groups, geo.in_channels), geo.kernel)
        weight += scale.view(-1, 1, *spatial) * own
        if conv.bias is not None:
            bias += scale * conv.bias.detach().to("cpu", torch.float64)
    bias += torch.broadcast_to(form.bias, (out_channels,))
    return weight, bias


def _emit(rw: "_Rewriter", root: fx.Node, form: _Form, geo: _Geometry) -> str:
    weight, bias = _weights(rw, form, geo)
    conv = geo.cls(geo.in_channels, geo.out_channels, geo.kernel, stride=geo.stride, padding=geo.padding,
                   dilation=geo.dilation, groups=geo.groups, bias=True, padding_mode=geo.padding_mode,
                   device=geo.device, dtype=geo.dtype)
    with torch.no_grad():
        conv.weight.copy_(weight.to(geo.dtype))
        conv.bias.copy_(bias.to(geo.dtype))
    path = rw._add_module(root, "canonizer_reparam", conv)
    graph = rw.graph
    anchor = form.base
    if anchor.op == "placeholder":  # after the last placeholder: the signature stays first
        anchor = [n for n in graph.nodes if n.op == "placeholder"][-1]
    with graph.inserting_after(anchor):
        new = graph.call_module(path, (form.base,))
    new.meta = dict(root.meta)
    rw.flow.tensor[new] = True
    rw.flow.from_input[new] = rw.flow.from_input.get(form.base, True)
    order = {n: i for i, n in enumerate(graph.nodes)}
    root.replace_all_uses_with(new)
    # what is left of the branches' users are shape queries (timm's `x.ndim` asserts); every branch
    # has the sum's shape, so they read the merged output instead
    for node in sorted(set(form.nodes), key=order.__getitem__, reverse=True):
        node.replace_all_uses_with(new)
        graph.erase_node(node)
    pending = list(form.constants)
    while pending:
        node = pending.pop()
        if node.graph is graph and not node.users and node in order:
            inputs = node.all_input_nodes
            graph.erase_node(node)
            order.pop(node)
            pending += inputs
    return path


def merge_reparam(rw: "_Rewriter") -> dict[str, str]:
    """Merge every sum of affine branches of one tensor into one convolution (module docstring).

    Returns why batch norms on identity branches were not merged (by batch norm), for the batch norm
    pass to name in its own record when it cannot merge them either."""
    reader = _Reader(rw)
    gone: set[fx.Node] = set()  # erased
    reported: set[fx.Node] = set()  # part of a sum already reported as not mergeable
    merged_norms: set[str] = set()
    mixed: dict[str, str] = {}
    merges: list[list[Merge]] = []
    rewrites: list[Rewrite] = []
    for node in reversed(list(rw.graph.nodes)):
        if node in gone or not (_matches(node, _ADD) or _matches(node, _SUB)) or not rw.flow.is_signal(node):
            continue
        try:
            form = reader.read(node, root=True)
        except _Mixed as error:
            bases = ", ".join(_tensor(f.base) for f in error.forms)
            for part in error.forms:
                for branch in part.branches:
                    if branch.conv is None:
                        for norm in branch.norms:
                            mixed.setdefault(norm, f"not re-parameterized: it is summed with branches of other "
                                                   f"tensors ({bases})")
            continue
        except (_NotAffine, RuntimeError):
            continue
        if len(form.branches) < 2 or all(b.conv is None for b in form.branches):
            continue
        geometry = _geometry(rw, form)
        path, reason = None, geometry if isinstance(geometry, str) else ""
        if isinstance(geometry, _Geometry):
            try:
                path = _emit(rw, node, form, geometry)
            except RuntimeError as error:  # channel counts of scales and convolutions disagree
                reason = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
        if path is None or not isinstance(geometry, _Geometry):
            if node in reported:  # a part of a larger sum that is not mergeable either
                continue
            reported.update(form.nodes)
            branches = " + ".join(_describe(rw, b) for b in form.branches)
            rw.changes.skipped.append(Skip(g.owner_path(node), (
                f"sum of {len(form.branches)} branches of {_tensor(form.base)} not merged into one convolution: "
                f"{reason} (branches: {branches})")))
            continue
        gone.update(form.nodes)
        norms = list(dict.fromkeys(n for b in form.branches for n in b.norms))
        merged_norms.update(norms)
        kernel = "x".join(map(str, geometry.kernel))
        scaled = ", constant scales folded in" if form.constants else ""
        rewrites.append(Rewrite("reparam", path, (
            f"{len(form.branches)} branches of {_tensor(form.base)} as one {kernel} convolution{scaled}: "
            + " + ".join(_describe(rw, b) for b in form.branches))))
        merges.append([Merge(norm, (path,), "reparam") for norm in norms])
    # found from the output backwards; reported in the order of the forward
    rw.changes.rewrites += rewrites[::-1]
    rw.changes.merges += [merge for group in merges[::-1] for merge in group]
    return {norm: reason for norm, reason in mixed.items() if norm not in merged_norms}
