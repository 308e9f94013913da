"""Functional layers in traced code turned back into modules.

torch.fx traces into modules that torch.nn does not define. A fused norm + activation (timm's
``BatchNormAct2d``: ``F.batch_norm`` then ``self.act``) or a module that holds a weight and calls
``F.conv2d(x, self.weight, ...)`` itself then shows up as a *function call* on the module's own
parameters. Merges and LRP rules act on modules, so each such call on parameters and buffers of
one module becomes a call of an equivalent torch.nn module that *shares* those tensors
(``<owner>.canonizer_bn``, ``<owner>.canonizer_conv``, ``<owner>.canonizer_linear``). A call that
cannot be converted (its weight is computed, its options are not constants) is recorded as
skipped with the reason; :func:`xaiopt.canonize.census.census` then measures it in the twin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import fx, nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from .changes import Rewrite
from .graph import owner_path, torch_base

if TYPE_CHECKING:
    from .canonizer import _Rewriter

_BATCH_NORM = {F.batch_norm, torch.batch_norm}
_CONV = {F.conv1d: nn.Conv1d, F.conv2d: nn.Conv2d, F.conv3d: nn.Conv3d,
         torch.conv1d: nn.Conv1d, torch.conv2d: nn.Conv2d, torch.conv3d: nn.Conv3d}
_LINEAR = {F.linear, torch._C._nn.linear}

_BATCH_NORM_ARGS = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
_CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_CONV_DEFAULTS = {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1}
_LINEAR_ARGS = ("input", "weight", "bias")


def _bind(node: fx.Node, names: tuple[str, ...], defaults: dict[str, Any]) -> dict[str, Any] | None:
    if len(node.args) > len(names) or set(node.kwargs) - set(names):
        return None
    bound = dict(defaults)
    bound.update(zip(names, node.args))
    bound.update(node.kwargs)
    return bound if all(name in bound for name in names) else None


def _attribute(root: nn.Module, value: Any) -> tuple[str, str, torch.Tensor] | None:
    """``(owner path, attribute name, tensor)`` when ``value`` is a get_attr node of a module's tensor."""
    if not isinstance(value, fx.Node) or value.op != "get_attr":
        return None
    owner, _, attribute = value.target.rpartition(".")
    try:
        module = root.get_submodule(owner) if owner else root
    except AttributeError:
        return None
    tensor = getattr(module, attribute, None)
    return (owner, attribute, tensor) if isinstance(tensor, torch.Tensor) else None


def modularize(rewriter: "_Rewriter") -> None:
    """Replace functional batch norms, convolutions and linears on a module's own tensors by modules."""
    for node in list(rewriter.graph.nodes):
        if node.op != "call_function":
            continue
        if node.target in _BATCH_NORM:
            _batch_norm(rewriter, node)
        elif node.target in _CONV:
            _weighted(rewriter, node, "conv")
        elif node.target in _LINEAR:
            _weighted(rewriter, node, "linear")
    for node in list(rewriter.graph.nodes):
        if node.op == "get_attr" and not node.users:
            rewriter.graph.erase_node(node)


def _where(node: fx.Node) -> str:
    return owner_path(node) or "<model>"


def _batch_norm(rw: "_Rewriter", node: fx.Node) -> None:
    bound = _bind(node, _BATCH_NORM_ARGS, {"weight": None, "bias": None, "training": False, "momentum": 0.1,
                                           "eps": 1e-5})
    what = f"functional batch_norm in {_where(node)}"
    eps = None if bound is None else bound["eps"]
    if bound is None or bound["training"] is not False or isinstance(eps, bool) or not isinstance(eps, (int, float)):
        rw._skip(_where(node), f"{what}: not an eval-mode call with constant options")
        return
    refs = {k: _attribute(rw.root, bound[k]) for k in ("running_mean", "running_var", "weight", "bias")
            if bound[k] is not None}
    owners = {ref[0] for ref in refs.values() if ref is not None}
    if not {"running_mean", "running_var"} <= set(refs) or None in refs.values() or len(owners) != 1 or any(
            ref[1] != k for k, ref in refs.items()):
        rw._skip(_where(node), f"{what}: its statistics are not the buffers of one module")
        return
    owner_path = owners.pop()
    owner = rw.root.get_submodule(owner_path) if owner_path else rw.root
    if not isinstance(owner, _BatchNorm):
        rw._skip(_where(node), f"{what}: not the batch norm of a torch batch norm subclass")
        return
    base = torch_base(owner)
    module = base(owner.num_features, eps=bound["eps"], affine=False, track_running_stats=True,
                  device=owner.running_mean.device, dtype=owner.running_mean.dtype)
    # share the owner's very tensors: merges read them, and the owner keeps its state dict
    module._buffers["running_mean"] = owner.running_mean
    module._buffers["running_var"] = owner.running_var
    module._buffers["num_batches_tracked"] = owner.num_batches_tracked
    module._parameters["weight"] = owner.weight if "weight" in refs else None
    module._parameters["bias"] = owner.bias if "bias" in refs else None
    module.affine = "weight" in refs
    module.eval()
    path = rw._add_module(node, "canonizer_bn", module)
    rw._replace(node, path, (bound["input"],))
    rw.changes.rewrites.append(Rewrite("functional_batch_norm", path, f"F.batch_norm of '{owner_path}'"))


def _weighted(rw: "_Rewriter", node: fx.Node, kind: str) -> None:
    is_conv = kind == "conv"
    bound = _bind(node, _CONV_ARGS, _CONV_DEFAULTS) if is_conv else _bind(node, _LINEAR_ARGS, {"bias": None})
    what = f"functional {getattr(node.target, '__name__', kind)} in {_where(node)}"
    if bound is None:
        rw._skip(_where(node), f"{what}: arguments not understood")
        return
    weight = _attribute(rw.root, bound["weight"])
    bias = _attribute(rw.root, bound["bias"]) if bound["bias"] is not None else None
    if weight is None or (bound["bias"] is not None and bias is None):
        rw._skip(_where(node), f"{what}: its weight is computed, not a module's tensor; no rule can reach it")
        return
    # a fixed filter held as a buffer (anti-aliasing blur pools) becomes a frozen parameter on the
    # same storage: a linear layer all the same, which a rule must be able to reach
    tensor, bias_tensor = (_as_parameter(t) for t in (weight[2], bias[2] if bias is not None else None))
    if is_conv:
        options = {k: bound[k] for k in ("stride", "padding", "dilation", "groups")}
        if any(isinstance(v, fx.Node) for v in options.values()) or not isinstance(options["groups"], int):
            rw._skip(_where(node), f"{what}: options are computed at run time")
            return
        cls = _CONV[node.target]
        module = cls(tensor.shape[1] * options["groups"], tensor.shape[0], tuple(tensor.shape[2:]),
                     bias=False, device=tensor.device, dtype=tensor.dtype, **options)
    else:
        module = nn.Linear(tensor.shape[1], tensor.shape[0], bias=False, device=tensor.device, dtype=tensor.dtype)
    module._parameters["weight"] = tensor
    module._parameters["bias"] = bias_tensor
    path = rw._add_module(node, f"canonizer_{kind}", module)
    rw._replace(node, path, (bound["input"],))
    rw.changes.rewrites.append(Rewrite(f"functional_{kind}", path, f"on '{weight[0] or '<model>'}.{weight[1]}'"))


def _as_parameter(tensor: torch.Tensor | None) -> nn.Parameter | None:
    if tensor is None or isinstance(tensor, nn.Parameter):
        return tensor
    return nn.Parameter(tensor, requires_grad=False)


