"""Shared fixtures for the canonization tests: randomized batch norms, small inputs, float64."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def randomize_batch_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random running statistics and affine parameters, with negative and near-zero scales."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, _BatchNorm):
                continue
            n = module.num_features
            dtype = module.running_mean.dtype

            def draw(*shape):
                return torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)

            module.running_mean.copy_(draw(n) * 0.5)
            module.running_var.copy_(draw(n).abs() + 0.2)
            if module.weight is not None:
                weight = draw(n)
                weight[::7] = -weight[::7].abs()  # negative scales
                weight[3::11] = 1e-9  # near-zero scales
                module.weight.copy_(weight)
                module.bias.copy_(draw(n) * 0.5)
    return model.eval()


def make_input(shape=(2, 3, 64, 64), seed: int = 1, dtype=torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)
