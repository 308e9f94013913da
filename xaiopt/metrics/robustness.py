"""Robustness: how much the explanation changes under small input noise (Yeh et al. 2019)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .batching import chunk_size, map_chunks
from .context import MetricContext
from .noise import uniform_noise
from .normalise import prepare
from .registry import Param, register_metric


def sensitivity_noise(
    ctx: MetricContext, nr_samples: int, lower_bound: float, upper_bound: Optional[float]
) -> Tensor:
    """(nr_samples, N, C, H, W) additive noise: U(-lower, lower), or U(lower, upper) (as Quantus).

    Depends only on the study seed and shapes: every trial sees the same perturbed inputs.
    """
    low, high = (-lower_bound, lower_bound) if upper_bound is None else (lower_bound, upper_bound)
    return uniform_noise(ctx, "sensitivity", (nr_samples, *ctx.x.shape), low, high)


def sensitivities(
    ctx: MetricContext,
    *,
    nr_samples: int,
    lower_bound: float,
    upper_bound: Optional[float],
    abs: bool,
    normalise: bool,
    return_nan_when_prediction_changes: bool,
) -> Tensor:
    """(N, nr_samples): ||a(x) - a(x + noise)||_F / ||a(x)||_F, explained in chunks of draws x samples."""
    x, y = ctx.x, ctx.y.to(ctx.device)
    n = x.shape[0]
    a = prepare(ctx.attributions, abs=abs, normalise=normalise).reshape(n, -1)
    a_norm = a.double().norm(dim=-1)
    noise = sensitivity_noise(ctx, nr_samples, lower_bound, upper_bound)
    clean_label = ctx.logits.argmax(-1).to(ctx.device)

    def chunk(start: int, stop: int) -> Tensor:
        j = torch.arange(start, stop, device=x.device)
        s, i = j // n, j % n
        x_pert = x[i] + noise[s, i]
        a_pert = ctx.explain_rows(x_pert, y[i], i).detach()
        a_pert = prepare(a_pert, abs=abs, normalise=normalise).reshape(len(j), -1)
        ratio = (a[i] - a_pert).double().norm(dim=-1) / a_norm[i]
        if return_nan_when_prediction_changes:
            with torch.no_grad():
                changed = ctx.forward(x_pert, i).argmax(-1) != clean_label[i]
            ratio = ratio.masked_fill(changed, float("nan"))
        return ratio

    return map_chunks(nr_samples * n, chunk_size(ctx, nr_samples * n), chunk).view(nr_samples, n).T


_SENSITIVITY_PARAMS = dict(
    nr_samples=Param(10, check=lambda v: v > 0, valid="> 0", doc="noise draws per sample (Quantus default 200)"),
    lower_bound=Param(0.2, doc="noise is U(-lower_bound, lower_bound), or U(lower, upper) (Quantus default 0.2)"),
    upper_bound=Param(None, type=float, doc="see lower_bound (Quantus default None)"),
    abs=Param(False, doc="compare |a| (Quantus default False)"),
    normalise=Param(False, doc="normalise each map by its max |a| first (Quantus default False)"),
    return_nan_when_prediction_changes=Param(
        False, doc="drop draws that change the predicted class; a dropped draw makes the score NaN (Quantus)"
    ),
)


def _passes(p: dict) -> str:
    return f"N x {p['nr_samples']} explanations"


@register_metric(
    "avg_sensitivity", category="robustness", direction="minimize", passes=_passes, **_SENSITIVITY_PARAMS
)
def avg_sensitivity(ctx: MetricContext, **params) -> Tensor:
    """Mean relative change of the explanation over noise draws (Quantus ``AvgSensitivity``)."""
    s = sensitivities(ctx, **params)
    if params["return_nan_when_prediction_changes"]:
        return s.mean(-1)
    return s.nanmean(-1)


@register_metric(
    "max_sensitivity", category="robustness", direction="minimize", passes=_passes, **_SENSITIVITY_PARAMS
)
def max_sensitivity(ctx: MetricContext, **params) -> Tensor:
    """Largest relative change of the explanation over noise draws (Quantus ``MaxSensitivity``)."""
    s = sensitivities(ctx, **params)
    if params["return_nan_when_prediction_changes"]:
        return s.amax(-1)  # NaN propagates, as np.max
    top = torch.where(s.isnan(), torch.full_like(s, -torch.inf), s).amax(-1)
    return top.nan_to_num(nan=float("nan"), neginf=float("nan"))
