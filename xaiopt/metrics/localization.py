"""Localization: how much of the explanation lies on the object mask (Quantus ``localisation``)."""

from __future__ import annotations

import torch
from torch import Tensor

from .context import MetricContext
from .normalise import prepare
from .registry import Param, register_metric

_ABS = Param(False, doc="take |a| after normalising (Quantus default False)")
_NORMALISE = Param(True, doc="divide each map by its max |a| (Quantus default True)")


def _flat(ctx: MetricContext, abs: bool, normalise: bool) -> tuple[Tensor, Tensor]:
    a = prepare(ctx.attributions, abs=abs, normalise=normalise).reshape(ctx.n, -1)
    assert ctx.masks is not None
    s = ctx.masks.reshape(ctx.n, -1).to(device=a.device, dtype=torch.bool)
    if s.shape != a.shape:
        raise ValueError(f"masks of shape {tuple(ctx.masks.shape)} do not match attributions "
                         f"{tuple(ctx.attributions.shape)}")
    return a, s


def _nan_where_empty(score: Tensor, s: Tensor) -> Tensor:
    return score.masked_fill(s.sum(-1) == 0, float("nan"))


@register_metric(
    "relevance_rank_accuracy",
    category="localization",
    direction="maximize",
    needs_masks=True,
    passes="none",
    abs=_ABS,
    normalise=_NORMALISE,
)
def relevance_rank_accuracy(ctx: MetricContext, *, abs: bool, normalise: bool) -> Tensor:
    """Share of the K highest-ranked pixels that lie in the mask, K = mask size (Arras et al. 2021).

    NaN for an empty mask."""
    a, s = _flat(ctx, abs, normalise)
    k = s.sum(-1)
    # Stable sort: ties go to the earlier pixel (row-major); Quantus leaves tie order to numpy.
    order = torch.sort(a, dim=-1, descending=True, stable=True).indices
    in_mask = s.gather(1, order)
    top = torch.arange(a.shape[1], device=a.device).unsqueeze(0) < k.unsqueeze(1)
    score = (in_mask & top).sum(-1).double() / k.clamp(min=1).double()
    return _nan_where_empty(score, s)


@register_metric(
    "relevance_mass_accuracy",
    category="localization",
    direction="maximize",
    needs_masks=True,
    passes="none",
    positive=Param(True, doc="count positive relevance only, as Arras et al. define it: the score stays in "
                             "[0, 1] (0 for a map without positive relevance); False: signed sums, as Quantus"),
    abs=_ABS,
    normalise=_NORMALISE,
)
def relevance_mass_accuracy(ctx: MetricContext, *, positive: bool, abs: bool, normalise: bool) -> Tensor:
    """Relevance inside the mask divided by total relevance (Arras et al. 2021). NaN for an empty mask."""
    a, s = _flat(ctx, abs, normalise)
    a = a.double()
    if positive:
        # signed sums explode when a map's total is near zero: a pathological explanation would
        # score far above 1 and dominate the Pareto front
        a = a.clamp(min=0)
        total = a.sum(-1)
        score = torch.where(total > 0, (a * s).sum(-1) / total.clamp(min=torch.finfo(a.dtype).tiny), 0.0)
    else:
        score = (a * s).sum(-1) / a.sum(-1)
    return _nan_where_empty(score, s)


@register_metric(
    "pointing_game",
    category="localization",
    direction="maximize",
    needs_masks=True,
    passes="none",
    weighted=Param(False, doc="scale a hit by 1 - mask area / image area (Quantus's own is a no-op, see docs)"),
    abs=_ABS,
    normalise=_NORMALISE,
)
def pointing_game(ctx: MetricContext, *, weighted: bool, abs: bool, normalise: bool) -> Tensor:
    """1 if a pixel of maximal relevance lies in the mask, else 0 (Zhang et al. 2018). NaN for an empty mask."""
    a, s = _flat(ctx, abs, normalise)
    peak = a == a.amax(dim=-1, keepdim=True)
    hit = (peak & s).any(-1).double()
    if weighted:
        hit = hit * (1 - s.sum(-1).double() / s.shape[1])
    return _nan_where_empty(hit, s)
