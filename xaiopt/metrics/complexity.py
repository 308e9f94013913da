"""Complexity: how concentrated an explanation is (Quantus ``Sparseness``, ``Complexity``)."""

from __future__ import annotations

import torch
from torch import Tensor

from .context import MetricContext
from .normalise import prepare
from .registry import Param, register_metric

_ABS = Param(True, doc="take |a| after normalising (Quantus default True)")
_NORMALISE = Param(True, doc="divide each map by its max |a| (Quantus default True)")


@register_metric(
    "sparseness",
    category="complexity",
    direction="maximize",
    passes="none",
    abs=_ABS,
    normalise=_NORMALISE,
)
def sparseness(ctx: MetricContext, *, abs: bool, normalise: bool) -> Tensor:
    """Gini index of the attribution map (Chalasani et al. 2020): 1 - 1/n for a one-hot map, 0 for a flat one."""
    a = prepare(ctx.attributions, abs=abs, normalise=normalise).reshape(ctx.n, -1)
    return gini(a)


def gini(a: Tensor) -> Tensor:
    """Gini index per row, with Quantus's +1e-7 so that an all-zero row is defined (= 0)."""
    n = a.shape[-1]
    a = (a + 1e-7).double()
    a_sorted, _ = torch.sort(a, dim=-1)
    rank = torch.arange(1, n + 1, device=a.device, dtype=a.dtype)
    return ((2 * rank - n - 1) * a_sorted).sum(-1) / (n * a_sorted.sum(-1))


@register_metric(
    "complexity",
    category="complexity",
    direction="minimize",
    passes="none",
    abs=_ABS,
    normalise=_NORMALISE,
)
def complexity(ctx: MetricContext, *, abs: bool, normalise: bool) -> Tensor:
    """Entropy of the attribution map's share per pixel (Bhatt et al. 2020); log(n) for a flat map."""
    a = prepare(ctx.attributions, abs=abs, normalise=normalise).reshape(ctx.n, -1).double()
    p = a / a.abs().sum(-1, keepdim=True)
    return -(p * torch.log(p + 1e-12)).sum(-1)
