"""Batch norm as a per-channel affine map, and merging it into a neighbouring linear layer.

All merged parameters are computed in float64 and cast back to the layer's dtype.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .edits import EditLog
from .graph import has_own_forward, torch_base
from .layers import BIAS_MAP_CONV, _BiasMapConv, _interior_bias

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
CONV_TRANSPOSE_TYPES = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
LINEAR_TYPES = CONV_TYPES + (nn.Linear,)


def batch_norm_affine(bn: _BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` in float64 with ``bn(x) == scale * x + shift`` per channel (eval mode)."""
    var = bn.running_var.detach().double()
    mean = bn.running_mean.detach().double()
    scale = 1.0 / torch.sqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach().double()
    shift = -mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach().double()
    return scale, shift


def why_not_mergeable(bn: nn.Module) -> str | None:
    if not isinstance(bn, _BatchNorm):
        return f"{type(bn).__name__} is not a batch norm"
    if bn.training:
        return "batch norm is in training mode (uses batch statistics)"
    if bn.running_mean is None or bn.running_var is None:
        return "batch norm has no running statistics (track_running_stats=False)"
    return None


def can_merge_after(layer: nn.Module) -> str | None:
    """None if a batch norm following ``layer`` can be merged into it, else the reason."""
    if isinstance(layer, LINEAR_TYPES):
        return None
    if isinstance(layer, CONV_TRANSPOSE_TYPES):
        return None if layer.groups == 1 else "grouped transposed convolution"
    return f"{type(layer).__name__} is not a linear layer"


def merge_after(layer: nn.Module, scale: torch.Tensor, shift: torch.Tensor, log: EditLog) -> None:
    """Fold ``scale * layer(x) + shift`` into ``layer``."""
    weight = layer.weight
    out_dim = 1 if isinstance(layer, CONV_TRANSPOSE_TYPES) else 0
    view = [1] * weight.dim()
    view[out_dim] = -1
    scale = scale.to(weight.device)
    shift = shift.to(weight.device)
    log.set_data(weight, (weight.detach().double() * scale.view(view)).to(weight.dtype))
    bias = log.ensure_bias(layer, scale.numel())
    log.set_data(bias, (bias.detach().double() * scale + shift).to(bias.dtype))
    if isinstance(layer, _BiasMapConv):  # its border term is part of the output too
        shift_weight = layer.shift_weight
        log.set_attr(layer, "shift_weight", (shift_weight.double() * scale.view(view)).to(shift_weight.dtype))


def can_merge_before(layer: nn.Module, channels: int) -> str | None:
    """None if a per-channel affine map of ``channels`` channels feeding ``layer`` can be merged."""
    if isinstance(layer, nn.Linear):
        if layer.in_features % channels:
            return f"Linear in_features={layer.in_features} is not a multiple of {channels} channels"
        return None
    if isinstance(layer, CONV_TYPES):
        if isinstance(layer, _BiasMapConv):
            return "convolution already holds a merged batch norm"
        if has_own_forward(layer):
            # its forward may pad by itself (static "same" padding): a shift t of the input would
            # then not be a constant bias at the borders, and a bias-map twin would drop the forward
            return f"convolution {type(layer).__name__} has its own forward (padding unknown from the input side)"
        if layer.in_channels != channels:
            return f"convolution expects {layer.in_channels} channels, batch norm has {channels}"
        if isinstance(layer.padding, str) and layer.padding == "same" and layer.padding_mode == "zeros":
            return "padding='same' with zeros is not supported for a merge from the input side"
        return None
    return f"{type(layer).__name__} is not a linear layer"


def _zero_padded(conv: nn.Module) -> bool:
    if conv.padding_mode != "zeros":  # reflect/replicate/circular pad with values of x: affine commutes
        return False
    padding = conv.padding if isinstance(conv.padding, tuple) else (conv.padding,)
    return any(p != 0 for p in padding) if not isinstance(conv.padding, str) else conv.padding != "valid"


def merge_before(
    layer: nn.Module, scale: torch.Tensor, shift: torch.Tensor, log: EditLog, parent: nn.Module, name: str
) -> str:
    """Fold ``layer(scale * x + shift)`` into ``layer``; returns how (``"linear"``, ``"conv"``, ``"bias_map"``).

    A zero-padded convolution is replaced (at ``parent.name``) by a :class:`BiasMapConv2d` twin that
    keeps the exact border behaviour.
    """
    weight = layer.weight
    device = weight.device
    scale = scale.to(device)
    shift = shift.to(device)
    w64 = weight.detach().double()
    if isinstance(layer, nn.Linear):
        repeat = layer.in_features // scale.numel()  # flatten(1) of (N, C, ...) is channel-major
        scale_e = scale.repeat_interleave(repeat)
        shift_e = shift.repeat_interleave(repeat)
        bias_add = w64 @ shift_e
        log.set_data(weight, (w64 * scale_e.view(1, -1)).to(weight.dtype))
        bias = log.ensure_bias(layer, layer.out_features)
        log.set_data(bias, (bias.detach().double() + bias_add).to(bias.dtype))
        return "linear"

    out_channels, in_per_group = weight.shape[:2]
    groups = layer.groups
    per_out = scale.view(groups, 1, in_per_group).expand(groups, out_channels // groups, in_per_group)
    scale_w = per_out.reshape(out_channels, in_per_group, *([1] * (weight.dim() - 2)))
    new_weight = (w64 * scale_w).to(weight.dtype)
    bias_add = _interior_bias(w64, shift, groups)
    old_bias = layer.bias.detach().double() if layer.bias is not None else torch.zeros_like(bias_add)
    new_bias = (old_bias + bias_add).to(weight.dtype)
    if not _zero_padded(layer):
        log.set_data(weight, new_weight)
        bias = log.ensure_bias(layer, out_channels)
        log.set_data(bias, new_bias)
        return "conv"

    twin = BIAS_MAP_CONV[torch_base(layer)](
        layer.in_channels,
        layer.out_channels,
        layer.kernel_size,
        stride=layer.stride,
        padding=layer.padding,
        dilation=layer.dilation,
        groups=layer.groups,
        bias=True,
        padding_mode=layer.padding_mode,
        device=device,
        dtype=weight.dtype,
    )
    twin.train(layer.training)
    with torch.no_grad():
        twin.weight.copy_(new_weight)
        twin.bias.copy_(new_bias)
    twin.register_buffer("shift_weight", weight.detach().clone())
    twin.register_buffer("shift", shift.to(weight.dtype))
    log.set_attr(parent, name, twin)
    return "bias_map"
