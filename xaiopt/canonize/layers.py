"""Explicit modules that canonization puts into a model's dataflow.

Each one computes exactly what the expression it replaces computed; it exists so that zennit rules
(or a reader of ``named_modules()``) can find the operation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

import torch
from torch import nn
from zennit.layer import Sum

__all__ = ["Sum", "Concat", "GateMul", "ThreshReLU", "BiasMapConv1d", "BiasMapConv2d", "BiasMapConv3d"]


class Concat(nn.Module):
    """``torch.cat(tensors, dim)`` as a module.

    Concatenation only routes values, so the plain gradient already moves relevance exactly; do not
    attach a zennit rule to it (zennit hooks take a single input tensor).
    """

    def __init__(self, dim: int = 0) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return torch.cat(tensors, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class _GateFunction(torch.autograd.Function):
    """``signal * gate`` whose backward hands the upstream quantity to the signal unchanged.

    zennit propagates relevance as the gradient; treating the gate as a constant scale of the signal
    (the LRP view of gating), the relevance of ``signal * gate`` belongs entirely to ``signal``.
    """

    @staticmethod
    def forward(ctx, signal: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        ctx.signal_shape = signal.shape
        ctx.gate_meta = (gate.shape, gate.dtype, gate.device)
        return signal * gate

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        grad_signal = grad_output
        if grad_signal.shape != ctx.signal_shape:  # the signal was broadcast: sum back
            grad_signal = grad_signal.sum_to_size(ctx.signal_shape)
        shape, dtype, device = ctx.gate_meta
        return grad_signal, torch.zeros(shape, dtype=dtype, device=device)


class GateMul(nn.Module):
    """A squeeze-excitation style gate, ``signal * gate``.

    The forward is the exact product. The backward passes the upstream gradient (relevance, under a
    zennit composite) to the signal unchanged and nothing to the gate branch, so relevance flows
    through the signal path only. Use the original model when the true gradient of the gate is needed.
    """

    def forward(self, signal: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        if _GRADIENT_FRAME.get():
            # what flows backward is a gradient (xaiopt's transformer rules): the gate as a constant
            # scale gives the signal the whole relevance of the product there too
            return signal * gate.detach()
        return _GateFunction.apply(signal, gate)


_GRADIENT_FRAME: ContextVar[bool] = ContextVar("xaiopt_gradient_frame", default=False)


@contextlib.contextmanager
def gradient_frame() -> Iterator[None]:
    """While active, the explicit modules compute for a backward pass that carries gradients (the
    relevance of a tensor is the tensor times its gradient) rather than relevance itself."""
    token = _GRADIENT_FRAME.set(True)
    try:
        yield
    finally:
        _GRADIENT_FRAME.reset(token)


def _channel_view(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.view(1, -1, *([1] * (like.dim() - 2)))


class ThreshReLU(nn.ReLU):
    """The thresholded ReLU of the BN -> ReLU rewrite (Pahde et al., 2023), per channel.

    ``direction`` +1: ``max(x, threshold)``; -1: ``min(x, threshold)``; 0: the constant 0 (the channel
    of a batch norm with zero scale, whose ReLU output does not depend on the input).
    Subclasses :class:`torch.nn.ReLU` so composites treat it as an activation (zennit ``Pass``).
    """

    def __init__(self, threshold: torch.Tensor, direction: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("threshold", threshold.detach().clone())
        self.register_buffer("direction", direction.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        threshold = _channel_view(self.threshold, x).to(x.dtype)
        direction = _channel_view(self.direction, x)
        upper = torch.maximum(x, threshold)
        lower = torch.minimum(x, threshold)
        return torch.where(direction > 0, upper, torch.where(direction < 0, lower, torch.zeros_like(x)))

    def extra_repr(self) -> str:
        return f"channels={self.threshold.numel()}"


class _BiasMapConv:
    """A zero-padded convolution with a batch norm merged in from its input side.

    ``conv(s*x + t)`` with zero padding equals ``conv_{W*s}(x) + b + conv_W(t on the input extent)``.
    The last term is the interior bias ``sum(W*t)`` everywhere except at the borders, where part of
    the window lies in the padding. ``bias`` holds the interior value; the border correction is
    recomputed from the buffers ``shift_weight`` (W) and ``shift`` (t) for the actual input size.
    """

    shift_weight: torch.Tensor
    shift: torch.Tensor

    def border_correction(self, x: torch.Tensor) -> torch.Tensor:
        shift = self.shift.to(x.dtype)
        weight = self.shift_weight.to(x.dtype)
        image = _channel_view(shift, x).expand(1, -1, *x.shape[2:])
        full = self._conv_forward(image, weight, None)
        interior = _interior_bias(weight, shift, self.groups)
        return full - _channel_view(interior, full)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight, self.bias) + self.border_correction(x)


def _interior_bias(weight: torch.Tensor, shift: torch.Tensor, groups: int) -> torch.Tensor:
    """``sum_{c,k} W[o,c,k] * t[c]`` for a (grouped) convolution weight."""
    out_channels, in_per_group = weight.shape[:2]
    grouped = shift.view(groups, 1, in_per_group).expand(groups, out_channels // groups, in_per_group)
    per_out = grouped.reshape(out_channels, in_per_group)
    return (weight * per_out.view(out_channels, in_per_group, *([1] * (weight.dim() - 2)))).flatten(1).sum(1)


class BiasMapConv1d(_BiasMapConv, nn.Conv1d):
    __doc__ = _BiasMapConv.__doc__


class BiasMapConv2d(_BiasMapConv, nn.Conv2d):
    __doc__ = _BiasMapConv.__doc__


class BiasMapConv3d(_BiasMapConv, nn.Conv3d):
    __doc__ = _BiasMapConv.__doc__


BIAS_MAP_CONV = {nn.Conv1d: BiasMapConv1d, nn.Conv2d: BiasMapConv2d, nn.Conv3d: BiasMapConv3d}

