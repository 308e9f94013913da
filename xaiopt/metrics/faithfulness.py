"""Faithfulness: does removing what the explanation calls relevant change the prediction?"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from xaiopt.errors import ConfigError

from .batching import chunk_size, class_scores, clean_scores, map_chunks
from .context import MetricContext
from .noise import generator
from .normalise import prepare
from .occlusion import BASELINES, baseline_image, occlusion_scores
from .registry import Param, register_metric
from .similarity import pearson

_positive = dict(check=lambda v: v > 0, valid="> 0")

_OCCLUSION_PARAMS = dict(
    baseline=Param("black", choices=BASELINES, doc="value of occluded pixels, see occlusion.baseline_image"),
    softmax=Param(True, doc="score the softmax probability of y (Quantus default True) instead of its logit"),
    abs=Param(False, doc="rank by |a| (Quantus default False)"),
    normalise=Param(True, doc="normalise a by its max |a| first (Quantus default True; no effect on the order)"),
    uniform_low=Param(0.0, doc="lower bound of the 'uniform' baseline"),
    uniform_high=Param(1.0, doc="upper bound of the 'uniform' baseline"),
    blur_kernel_size=Param(15, **_positive, doc="box size of the 'blur' baseline (Quantus's blur default 15)"),
)


def _padding(dim: int, patch: int) -> tuple[int, int]:
    """Quantus's split of the padding that makes ``dim`` a multiple of ``patch``."""
    rest = dim % patch
    if rest == 0:
        return 0, 0
    total = patch - rest
    return total // 2, total - total // 2


def _rank(values: Tensor, descending: bool) -> Tensor:
    """Position of every column in a stable sort of each row (ties: lower index first)."""
    order = torch.sort(values, dim=-1, descending=descending, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(values.shape[1], device=values.device).expand_as(order))
    return rank


def region_perturbation_curve(
    ctx: MetricContext,
    *,
    patch_size: int = 8,
    regions: int = 100,
    order: str = "morf",
    baseline: str = "black",
    softmax: bool = True,
    abs: bool = False,
    normalise: bool = True,
    uniform_low: float = 0.0,
    uniform_high: float = 1.0,
    blur_kernel_size: int = 15,
) -> Tensor:
    """(N, S): f(x) - f(x with the first k patches occluded), k = 1..S, S = min(regions, #patches).

    The same curve as Quantus ``RegionPerturbation`` returns per sample. Patches form a grid of
    ``patch_size`` squares over the image padded as Quantus pads it (split evenly, attribution
    zero in the padding); they are ordered by their attribution sum, descending for ``morf``.
    """
    x = ctx.x
    n, _, h, w = x.shape
    a = prepare(ctx.attributions, abs=abs, normalise=normalise).sum(1)
    (pt, pb), (pl, pr) = _padding(h, patch_size), _padding(w, patch_size)
    a_pad = torch.nn.functional.pad(a.double(), (pl, pr, pt, pb))
    gh, gw = a_pad.shape[1] // patch_size, a_pad.shape[2] // patch_size
    sums = a_pad.view(n, gh, patch_size, gw, patch_size).sum((2, 4)).reshape(n, gh * gw)
    rank = _rank(sums, descending=(order == "morf"))
    rows = (torch.arange(h, device=x.device) + pt) // patch_size
    cols = (torch.arange(w, device=x.device) + pl) // patch_size
    patch_of_pixel = rows.view(-1, 1) * gw + cols.view(1, -1)
    step_of_pixel = rank[:, patch_of_pixel.reshape(-1)].view(n, h, w)
    n_steps = min(regions, gh * gw)
    base = baseline_image(
        ctx,
        kind=baseline,
        step_of_pixel=step_of_pixel,
        n_steps=n_steps,
        key="region_perturbation",
        uniform_low=uniform_low,
        uniform_high=uniform_high,
        blur_kernel_size=blur_kernel_size,
    )
    scores = occlusion_scores(ctx, step_of_pixel=step_of_pixel, n_steps=n_steps, baseline=base, softmax=softmax,
                              per_step_baseline=baseline == "uniform")
    return clean_scores(ctx.logits, ctx.y, softmax).unsqueeze(1) - scores


@register_metric(
    "region_perturbation",
    category="faithfulness",
    direction="maximize",
    direction_for=lambda p: "maximize" if p["order"] == "morf" else "minimize",
    passes=lambda p: f"N x min(regions, patches) = N x <= {p['regions']} forward passes",
    patch_size=Param(8, **_positive, doc="side of the square regions in pixels (Quantus default 8)"),
    regions=Param(100, **_positive,
                  doc="how many regions to occlude, at most all of them (Quantus regions_evaluation=100)"),
    order=Param("morf", choices=("morf", "lerf"),
                doc="most relevant first (maximize) or least relevant first (minimize)"),
    **_OCCLUSION_PARAMS,
)
def region_perturbation(ctx: MetricContext, **params) -> Tensor:
    """AOPC (Samek et al. 2016): mean over k = 0..S of f(x) - f(x_k); the k = 0 term is 0.

    Use :func:`region_perturbation_curve` for the curve itself.
    """
    curve = region_perturbation_curve(ctx, **params)
    return curve.sum(1) / (curve.shape[1] + 1)


def pixel_flipping_curve(
    ctx: MetricContext,
    *,
    features_in_step: int = 64,
    baseline: str = "black",
    softmax: bool = True,
    abs: bool = False,
    normalise: bool = True,
    uniform_low: float = 0.0,
    uniform_high: float = 1.0,
    blur_kernel_size: int = 15,
) -> Tensor:
    """(N, T): f(x with the k * features_in_step most relevant pixels occluded), k = 1..T.

    A feature is a pixel with all its channels (Quantus flips single channel values; Quantus
    with ``features_in_step = C * f`` gives this curve with ``features_in_step = f``).
    """
    x = ctx.x
    n, _, h, w = x.shape
    a = prepare(ctx.attributions, abs=abs, normalise=normalise).sum(1).reshape(n, -1)
    step_of_pixel = (_rank(a.double(), descending=True) // features_in_step).view(n, h, w)
    n_steps = math.ceil(h * w / features_in_step)
    base = baseline_image(
        ctx,
        kind=baseline,
        step_of_pixel=step_of_pixel,
        n_steps=n_steps,
        key="pixel_flipping",
        uniform_low=uniform_low,
        uniform_high=uniform_high,
        blur_kernel_size=blur_kernel_size,
    )
    return occlusion_scores(ctx, step_of_pixel=step_of_pixel, n_steps=n_steps, baseline=base, softmax=softmax,
                            per_step_baseline=baseline == "uniform")


@register_metric(
    "pixel_flipping",
    category="faithfulness",
    direction="minimize",
    passes=lambda p: f"N x ceil(H*W / {p['features_in_step']}) forward passes",
    features_in_step=Param(64, **_positive, doc="pixels occluded per step (Quantus: 1 channel value per step)"),
    **_OCCLUSION_PARAMS,
)
def pixel_flipping(ctx: MetricContext, **params) -> Tensor:
    """Area under the pixel-flipping curve on an x-axis scaled to [0, 1] (Bach et al. 2015).

    Quantus's ``return_auc_per_sample`` integrates with dx = 1, i.e. ours times (T - 1).
    """
    curve = pixel_flipping_curve(ctx, **params)
    if curve.shape[1] == 1:
        return curve[:, 0]
    return torch.trapezoid(curve.double(), dx=1.0 / (curve.shape[1] - 1), dim=1)


def faithfulness_correlation_subsets(ctx: MetricContext, nr_runs: int, subset_size: int) -> Tensor:
    """(nr_runs, N, subset_size) feature indices into the flattened (C, H, W) input, from the seed.

    Trial independent: depends only on the seed and the input shape, so cached per worker.
    """
    n = ctx.n
    n_features = int(ctx.x[0].numel())
    key = ("faithfulness_correlation_subsets", ctx.seed, nr_runs, subset_size, tuple(ctx.x.shape), str(ctx.device))
    if key not in ctx.cache:
        g = generator(ctx.seed, f"faithfulness_correlation:{nr_runs}:{subset_size}:{tuple(ctx.x.shape)}")
        rows = []
        for _ in range(nr_runs):  # one run at a time keeps the (N, n_features) scratch small
            rows.append(torch.rand(n, n_features, generator=g).topk(subset_size, dim=1).indices)
        ctx.cache[key] = torch.stack(rows).to(ctx.device)
    return ctx.cache[key]


@register_metric(
    "faithfulness_correlation",
    category="faithfulness",
    direction="maximize",
    passes=lambda p: f"N x {p['nr_runs']} forward passes",
    nr_runs=Param(100, **_positive, doc="random subsets per sample (Quantus default 100)"),
    subset_size=Param(224, **_positive, doc="channel values occluded per subset (Quantus default 224)"),
    baseline=Param("black", choices=("black", "white", "mean"), doc="value of occluded features"),
    softmax=Param(False, doc="score probabilities instead of logits (Quantus default False)"),
    abs=Param(False, doc="use |a| (Quantus default False)"),
    normalise=Param(True, doc="normalise a by its max |a| (Quantus default True; Pearson is scale invariant)"),
)
def faithfulness_correlation(
    ctx: MetricContext, *, nr_runs: int, subset_size: int, baseline: str, softmax: bool, abs: bool, normalise: bool
) -> Tensor:
    """Pearson correlation, over random feature subsets, of attribution sum and prediction drop (Bhatt et al. 2020)."""
    x, y = ctx.x, ctx.y.to(ctx.device)
    n = x.shape[0]
    flat_x = x.reshape(n, -1)
    n_features = flat_x.shape[1]
    if subset_size > n_features:
        raise ConfigError(
            f"metric 'faithfulness_correlation': parameter 'subset_size' = {subset_size} exceeds the "
            f"{n_features} input features; valid: 1..{n_features}"
        )
    a = prepare(ctx.attributions, abs=abs, normalise=normalise)
    a = a.expand(-1, x.shape[1], -1, -1).reshape(n, -1).double()
    subsets = faithfulness_correlation_subsets(ctx, nr_runs, subset_size)  # (R, N, S)
    fill = {"black": flat_x.amin, "white": flat_x.amax, "mean": flat_x.mean}[baseline](dim=1)
    clean = clean_scores(ctx.logits, y, softmax)

    def chunk(start: int, stop: int) -> Tensor:
        j = torch.arange(start, stop, device=x.device)
        r, i = j // n, j % n
        images = flat_x[i].clone()
        idx = subsets[r, i]
        images.scatter_(1, idx, fill[i].unsqueeze(1).expand_as(idx).to(images.dtype))
        return class_scores(ctx.model, images.view(-1, *x.shape[1:]), y[i], softmax, ctx.rows(i))

    perturbed = map_chunks(nr_runs * n, chunk_size(ctx, nr_runs * n), chunk).view(nr_runs, n)
    deltas = (clean.unsqueeze(0) - perturbed).double().T  # (N, R)
    att_sums = a.gather(1, subsets.permute(1, 0, 2).reshape(n, -1)).view(n, nr_runs, subset_size).sum(-1)
    return pearson(att_sums, deltas)

