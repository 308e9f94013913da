"""Transformer rules on torch functions: AttnLRP and CP-LRP in the gradient x input frame.

A transformer's relevance-carrying operations are mostly functions, not modules (``softmax``, the
attention products, ``layer_norm`` inside ``nn.LayerNorm``, ``scaled_dot_product_attention``), so
rules sit on the functions: while the engine records a forward, a ``TorchFunctionMode`` sees every
torch call whose arguments depend on the input and gives each kind of operation
(:mod:`xaiopt.canonize.operations`) its rule:

- the frame is AttnLRP's efficient one: what flows backward is a gradient, the relevance of a tensor
  ``t`` is ``t * grad``. Linear operations (residual sums, the position embedding, reshapes, products
  with constants) then need no rule: their plain gradient is LRP-0 with the bias absorbing its share;
- ``layer_norm`` / ``rms_norm``: the normalization as identity (its statistics held constant), the
  affine part as is;
- an elementwise non-linearity ``y = f(x)``: the identity rule, ``grad_x = y / (x + 1e-10) * grad_y``;
- ``softmax``: AttnLRP's rule, which is its plain gradient x input; CP-LRP holds it constant;
- a product of two input-dependent tensors (``matmul``, ``bmm``, ``einsum``, ``*``): the uniform
  rule, half of the gradient to each; under CP-LRP a product with attention weights gives the whole
  gradient to the other operand and none to the weights;
- ``scaled_dot_product_attention``: the uniform rule on its two products around the softmax rule
  (q and k a quarter of the gradient, v a half), or CP-LRP (q and k none, v all);
- ``multi_head_attention_forward`` (``nn.MultiheadAttention``): computed unfused, so each of the
  above applies to its parts.

Which attention rule applies is read at backward time from the :class:`~xaiopt.lrp.recorder.RuleBoard`,
so one kept forward serves AttnLRP and CP-LRP trials alike. Rules of weighted modules (epsilon,
gamma, ...) convert between the frames as LXT's zennit bridge does: ``R_out = grad * y``, the rule's
``R_in``, ``grad_x = R_in / stab(x)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import torch
from torch import Tensor
from torch.autograd import Function
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from xaiopt.canonize import operations as ops
from xaiopt.canonize.attention import multi_head_attention
from xaiopt.config.schema import ATTENTION_RULES

# LXT's identity rule adds this to the input of an elementwise non-linearity
IDENTITY_EPSILON = 1e-10

# gradient factor of a gated operand: role -> (attnlrp, cp)
_FACTORS = {
    "uniform": (0.5, 0.5),
    "weights": (1.0, 0.0),  # a softmax output: AttnLRP's softmax rule is its gradient; CP holds it constant
    "attn_weights": (0.5, 0.0),  # attention weights in a product
    "attn_other": (0.5, 1.0),  # the other operand of that product (the values)
    "query": (0.25, 0.0),
    "key": (0.25, 0.0),
    "value": (0.5, 1.0),
}
_MARK = "_xaiopt_attention_weights"


class UnsupportedOperation(Exception):
    """An operation on the input's path that no transformer rule covers (the census names it)."""


class _Gate(Function):
    """Identity forward; the backward scales the gradient by the role's factor under the board's rule."""

    @staticmethod
    def forward(ctx, x: Tensor, board, role: str) -> Tensor:
        ctx.board, ctx.role = board, role
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        factor = _FACTORS[ctx.role][ATTENTION_RULES.index(ctx.board.attention)]
        if factor == 1.0:
            return grad, None, None
        return grad * factor, None, None


class _Scaled(Function):
    """``y`` computed elsewhere; the backward is ``grad * scale`` (the identity rule's ``y / (x + eps)``)."""

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, scale: Tensor) -> Tensor:
        ctx.save_for_backward(scale)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        (scale,) = ctx.saved_tensors
        return grad * scale, None, None


class _NormIdentity(Function):
    """``y`` the norm's output; the backward of ``((x - mean) * inv_std) * w + b`` with the statistics
    constant: ``(gw - mean(gw)) * inv_std`` (layer norm) or ``gw * inv_std`` (RMS norm), ``gw = grad * w``."""

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, weight: Tensor | None, inv_std: Tensor, dims: tuple[int, ...],
                centred: bool) -> Tensor:
        ctx.save_for_backward(weight, inv_std)
        ctx.dims, ctx.centred = dims, centred
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        weight, inv_std = ctx.saved_tensors
        g = grad if weight is None else grad * weight
        if ctx.centred:
            g = g - g.mean(dim=ctx.dims, keepdim=True)
        return g * inv_std, None, None, None, None, None


def _argument(args, kwargs, index: int, name: str, default=None):
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


@dataclass
class OperationCensus:
    """What ran on the input's path in one recorded forward: calls per kind and rule, and the
    operations no rule covers (``"name in module"``)."""

    counts: dict[str, int] = field(default_factory=dict)
    uncovered: list[str] = field(default_factory=list)

    def add(self, label: str) -> None:
        self.counts[label] = self.counts.get(label, 0) + 1


class TransformerRules(TorchFunctionMode):
    """The function-level rules above, active while the engine records a transformer's forward.

    ``board.attention`` (``attnlrp`` | ``cp``) is read when the recorded graph is differentiated.
    With ``census``, every input-dependent call is counted by kind and the uncovered ones are named
    (``where()`` names the running module).
    """

    def __init__(self, board, census: OperationCensus | None = None, where=None) -> None:
        super().__init__()
        self.board = board
        self.census = census
        self.where = where

    def _note(self, label: str) -> None:
        if self.census is not None:
            self.census.add(label)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = ops.function_name(func)
        kind = ops.kind_of(func, args)
        if kind == ops.NEUTRAL:
            return func(*args, **kwargs)
        on_path = ops.input_dependent(args, kwargs)
        if not on_path:
            return func(*args, **kwargs)
        if kind == ops.LINEAR:
            if name in ("linear", "conv1d", "conv2d", "conv3d", "convolution", "addmm"):
                self._note("linear/conv without a module (LRP-0)")
            out = func(*args, **kwargs)
            if isinstance(out, Tensor) and any(getattr(t, _MARK, False) for t in on_path):
                setattr(out, _MARK, True)  # dropout, reshape, dtype casts of attention weights
            return out
        if kind == ops.NORM:
            self._note(name)
            return self._norm(name, func, args, kwargs, on_path)
        if kind == ops.ACTIVATION:
            self._note(f"activation {name}")
            return self._activation(func, args, kwargs, on_path)
        if kind == ops.SOFTMAX:
            self._note("softmax")
            out = _Gate.apply(func(*args, **kwargs), self.board, "weights")
            setattr(out, _MARK, True)
            return out
        if kind == ops.BILINEAR:
            if len(on_path) == 1:  # a product with a constant is linear
                return func(*args, **kwargs)
            if len(on_path) == 2:
                self._note("product of two input-dependent tensors")
                return self._bilinear(func, args, kwargs, on_path)
        if kind == ops.SDPA and not _depends(_argument(args, kwargs, 3, "attn_mask")):
            self._note("scaled_dot_product_attention")
            return self._sdpa(func, args, kwargs)
        if kind == ops.MHA:
            try:
                unfused = _unfused_attention(*args, **kwargs)
            except UnsupportedOperation as e:
                self._uncovered(f"multi_head_attention_forward ({e})")
                return func(*args, **kwargs)
            self._note("multi_head_attention")
            with self:
                return unfused()
        self._uncovered(name)
        return func(*args, **kwargs)

    def _uncovered(self, name: str) -> None:
        if self.census is None:
            return
        where = self.where() if self.where is not None else ""
        self.census.uncovered.append(f"{name} in {where}" if where else name)

    def _norm(self, name, func, args, kwargs, on_path):
        x = _argument(args, kwargs, 0, "input")
        if not _depends(x) or len(on_path) != 1:
            self._uncovered(f"{name} with input-dependent parameters")
            return func(*args, **kwargs)
        shape = _argument(args, kwargs, 1, "normalized_shape")
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        dims = tuple(range(-len(shape), 0))
        weight = _argument(args, kwargs, 2, "weight")
        with torch.no_grad():
            y = func(*args, **kwargs)
            xd = x.detach()
            if name == "layer_norm":
                eps = _argument(args, kwargs, 4, "eps", 1e-5)
                centred = xd - xd.mean(dim=dims, keepdim=True)
                inv_std = (centred.pow(2).mean(dim=dims, keepdim=True) + eps).sqrt().reciprocal()
            else:
                eps = _argument(args, kwargs, 3, "eps")
                eps = torch.finfo(xd.dtype).eps if eps is None else eps
                inv_std = torch.rsqrt(xd.pow(2).mean(dim=dims, keepdim=True) + eps)
        return _NormIdentity.apply(x, y, weight, inv_std, dims, name == "layer_norm")

    def _activation(self, func, args, kwargs, on_path):
        x = _argument(args, kwargs, 0, "input")
        if not _depends(x) or len(on_path) != 1:
            self._uncovered(f"{ops.function_name(func)} with input-dependent parameters")
            return func(*args, **kwargs)
        with torch.no_grad():
            xd = x.detach()
            # on a copy: an in-place activation must not overwrite the tensor the graph holds
            if args:
                y = func(xd.clone(), *args[1:], **kwargs)
            else:
                y = func(**{**kwargs, "input": xd.clone()})
            scale = y / (xd + IDENTITY_EPSILON)
        return _Scaled.apply(x, y, scale)

    def _bilinear(self, func, args, kwargs, on_path):
        a, b = on_path
        marked_a, marked_b = getattr(a, _MARK, False), getattr(b, _MARK, False)
        if marked_a != marked_b:
            roles = ("attn_weights", "attn_other") if marked_a else ("attn_other", "attn_weights")
        else:
            roles = ("uniform", "uniform")
        if a is b:  # x * x: one gate, the two uses add their halves
            gated = {id(a): _Gate.apply(a, self.board, "uniform")}
        else:
            gated = {id(a): _Gate.apply(a, self.board, roles[0]), id(b): _Gate.apply(b, self.board, roles[1])}
        return func(*_replace(args, gated), **{k: _replace_one(v, gated) for k, v in kwargs.items()})

    def _sdpa(self, func, args, kwargs):
        args = list(args)
        for index, role in enumerate(("query", "key", "value")):  # the roles are the argument names
            t = _argument(args, kwargs, index, role)
            if _depends(t):
                gated = _Gate.apply(t, self.board, role)
                if len(args) > index:
                    args[index] = gated
                else:
                    kwargs[role] = gated
        return func(*args, **kwargs)


def _depends(t) -> bool:
    return isinstance(t, Tensor) and t.requires_grad


def _replace_one(v, gated: dict[int, Tensor]):
    if isinstance(v, Tensor):
        return gated.get(id(v), v)
    if isinstance(v, (list, tuple)):
        return type(v)(gated.get(id(t), t) if isinstance(t, Tensor) else t for t in v)
    return v


def _replace(args, gated):
    return tuple(_replace_one(a, gated) for a in args)


def _unfused_attention(query, key, value, embed_dim_to_check, num_heads, in_proj_weight, in_proj_bias, bias_k,
                       bias_v, add_zero_attn, dropout_p, out_proj_weight, out_proj_bias, training=True,
                       key_padding_mask=None, need_weights=True, attn_mask=None, use_separate_proj_weight=False,
                       q_proj_weight=None, k_proj_weight=None, v_proj_weight=None, static_k=None, static_v=None,
                       average_attn_weights=True, is_causal=False):
    """``F.multi_head_attention_forward`` as :func:`xaiopt.canonize.attention.multi_head_attention`
    (linear layers, products and a softmax, or ``scaled_dot_product_attention``): a closure to run
    under the rules. The variants it does not cover raise :class:`UnsupportedOperation`."""
    for what, value_ in (("bias_k", bias_k), ("bias_v", bias_v), ("static_k", static_k), ("static_v", static_v),
                         ("key_padding_mask", key_padding_mask)):
        if value_ is not None:
            raise UnsupportedOperation(f"{what} is not supported")
    if add_zero_attn:
        raise UnsupportedOperation("add_zero_attn is not supported")
    if training and dropout_p > 0:
        raise UnsupportedOperation("attention dropout in training mode")
    if is_causal and attn_mask is None:
        raise UnsupportedOperation("is_causal without attn_mask is not supported")
    weights = (q_proj_weight, k_proj_weight, v_proj_weight) if use_separate_proj_weight else in_proj_weight.chunk(3)
    biases = (None, None, None) if in_proj_bias is None else in_proj_bias.chunk(3)
    project = tuple(partial(F.linear, weight=w, bias=b) for w, b in zip(weights, biases)) + (
        partial(F.linear, weight=out_proj_weight, bias=out_proj_bias),)
    return partial(multi_head_attention, query, key, value, num_heads=num_heads, project=project,
                   attn_mask=attn_mask, need_weights=need_weights, average_attn_weights=average_attn_weights)
