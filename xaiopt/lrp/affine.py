"""The affine layers LRP rules act on, as three primitives: the layer with other parameters, its
linear part, and the transpose of its linear part.

Every weighted layer ``L`` is ``L(x) = lin_W(x) + offset`` with ``offset`` independent of ``x``
(the bias, plus the border term of a :class:`~xaiopt.canonize.layers.BiasMapConv2d`). A rule needs
``L`` under modified parameters (zennit runs the module's own forward with swapped parameters;
:func:`forward_with` does the same), ``lin_W`` and ``lin_W^T`` (the input gradient of ``lin_W``).
Plain convolutions and linear layers take direct kernels (``convolution_backward`` computes only the
input gradient); any other weighted module goes through autograd on its own forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.modules.conv import _ConvNd

from xaiopt.canonize.layers import BiasMapConv1d, BiasMapConv2d, BiasMapConv3d

_TRANSPOSED = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
_PLAIN_CONV_FORWARDS = {nn.Conv1d.forward, nn.Conv2d.forward, nn.Conv3d.forward}
_BIAS_MAP = (BiasMapConv1d, BiasMapConv2d, BiasMapConv3d)


def direct_conv(module: nn.Module) -> bool:
    """A convolution whose linear part is ``_conv_forward(x, W, None)`` with zero padding."""
    if not isinstance(module, _ConvNd) or module.transposed or module.padding_mode != "zeros":
        return False
    if isinstance(module.padding, str):
        return False
    return type(module).forward in _PLAIN_CONV_FORWARDS or isinstance(module, _BIAS_MAP)


def _direct_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) and type(module).forward is nn.Linear.forward


def forward_with(module: nn.Module, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``module(x)`` with ``weight``/``bias`` in place of its parameters (a ``None`` bias keeps the
    module's own, which is ``None`` exactly when the module has no bias)."""
    params = {"weight": weight}
    if bias is not None and getattr(module, "bias", None) is not None:
        params["bias"] = bias
    return functional_call(module, params, (x,))


def linear_part(module: nn.Module, x: Tensor, weight: Tensor) -> Tensor:
    """``lin_W(x)``: the layer without bias or any other input-independent term."""
    if direct_conv(module):
        return module._conv_forward(x, weight, None)
    if _direct_linear(module):
        return F.linear(x, weight)
    zero_bias = None if getattr(module, "bias", None) is None else torch.zeros_like(module.bias)
    full = forward_with(module, x, weight, zero_bias)
    return full - forward_with(module, x.new_zeros((1,) + x.shape[1:]), weight, zero_bias)


def offset(module: nn.Module, like: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``L(0)`` for one sample shaped like ``like``: the bias plus any border term, broadcastable
    against the layer's output (``bias=None``: the module's own bias)."""
    plain_conv = direct_conv(module) and type(module).forward in _PLAIN_CONV_FORWARDS
    if plain_conv or _direct_linear(module):
        b = module.bias if bias is None else bias
        if b is None:
            return like.new_zeros(())
        return b if _direct_linear(module) else b.view(1, -1, *([1] * (like.dim() - 2)))
    return forward_with(module, like.new_zeros((1,) + like.shape[1:]), weight, bias)


def linear_part_t(module: nn.Module, grad: Tensor, weight: Tensor, input_shape: torch.Size) -> Tensor:
    """``lin_W^T(grad)``: the gradient of ``<lin_W(x), grad>`` with respect to ``x``."""
    if direct_conv(module):
        # the transposed convolution (faster on CPU than convolution_backward's input gradient);
        # output_padding restores the input extent a strided convolution rounded away
        dims = grad.dim() - 2
        extra = [
            input_shape[2 + i] - ((grad.shape[2 + i] - 1) * module.stride[i] - 2 * module.padding[i]
                                  + module.dilation[i] * (weight.shape[2 + i] - 1) + 1)
            for i in range(dims)
        ]
        return _TRANSPOSED[dims](grad, weight, None, module.stride, module.padding, extra, module.groups,
                                 module.dilation)
    if _direct_linear(module):
        return grad.matmul(weight)
    with torch.enable_grad():
        probe = grad.new_zeros(input_shape).requires_grad_(True)
        out = linear_part(module, probe, weight)
        (result,) = torch.autograd.grad(out, probe, grad_outputs=grad)
    return result


def linear_part_t_pair(module: nn.Module, grad: Tensor, first: Tensor, second: Tensor,
                       input_shape: torch.Size) -> tuple[Tensor, Tensor]:
    """``(lin_first^T(grad), lin_second^T(grad))``; one kernel call for an ungrouped convolution
    (the two weights stacked along the input channels), which suits the few channels of a first layer."""
    if direct_conv(module) and module.groups == 1:
        stacked = torch.cat([first, second], dim=1)
        shape = (input_shape[0], 2 * input_shape[1], *input_shape[2:])
        both = linear_part_t(module, grad, stacked, torch.Size(shape))
        return both[:, : input_shape[1]], both[:, input_shape[1]:]
    return linear_part_t(module, grad, first, input_shape), linear_part_t(module, grad, second, input_shape)
