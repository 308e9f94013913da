"""One mechanism behind region perturbation and pixel flipping: occlude pixels in a given order.

Every pixel gets the step at which it is replaced (``step_of_pixel``); the image after ``k`` steps
keeps the pixels with step >= k and shows the baseline elsewhere. All (sample, step) images are
built on the fly, chunk by chunk, and scored in forward passes of at most ``ctx.batch_budget``;
images an earlier trial of the study scored are taken from the worker's score memo instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .batching import chunk_size, class_scores, map_chunks
from .context import MetricContext
from .noise import uniform_noise
from .score_memo import memoised_scores, score_memo

BASELINES = ("black", "white", "mean", "uniform", "blur")


def baseline_image(
    ctx: MetricContext,
    *,
    kind: str,
    step_of_pixel: Tensor,
    n_steps: int,
    key: str,
    uniform_low: float,
    uniform_high: float,
    blur_kernel_size: int,
) -> Tensor:
    """The (N, C, H, W) values that occluded pixels take.

    ``black``/``white``: per-sample min/max over channels and pixels (as Quantus).
    ``mean``: per-sample mean of the clean image (Quantus re-takes the mean of the partly
    occluded image at every step; see docs/metrics.md).
    ``uniform``: one U(low, high) value per sample and step, shared by all pixels occluded at
    that step (as Quantus), drawn from the study seed.
    ``blur``: the clean image under a ``blur_kernel_size`` box filter with zero padding.
    """
    x = ctx.x
    n = x.shape[0]
    flat = x.reshape(n, -1)
    if kind in ("black", "white", "mean"):
        value = {"black": flat.amin, "white": flat.amax, "mean": flat.mean}[kind](dim=1)
        return value.view(n, 1, 1, 1).expand_as(x)
    if kind == "uniform":
        table = uniform_noise(ctx, key, (n, n_steps), uniform_low, uniform_high)
        step = step_of_pixel.clamp(max=n_steps - 1)
        values = table.gather(1, step.reshape(n, -1)).view(n, 1, *x.shape[2:])
        return values.expand_as(x)
    if kind == "blur":
        k = blur_kernel_size
        padded = F.pad(x, (k // 2, k - 1 - k // 2, k // 2, k - 1 - k // 2))
        return F.avg_pool2d(padded, k, stride=1)
    raise ValueError(f"unknown baseline {kind!r}")


def occlusion_scores(
    ctx: MetricContext, *, step_of_pixel: Tensor, n_steps: int, baseline: Tensor, softmax: bool,
    per_step_baseline: bool = False,
) -> Tensor:
    """(N, n_steps): the target score after occluding steps 0..k-1, for k = 1..n_steps.

    With ``ctx.score_cache_mb`` > 0, images an earlier trial already scored are not forwarded again
    (:mod:`xaiopt.metrics.score_memo`), unless the baseline differs per step (``per_step_baseline``).
    """
    x, y = ctx.x, ctx.y.to(ctx.device)
    n = x.shape[0]

    def score_rows(rows: Tensor) -> Tensor:
        def chunk(start: int, stop: int) -> Tensor:
            j = rows[start:stop]
            i, k = j // n_steps, j % n_steps + 1
            occluded = (step_of_pixel[i] < k.view(-1, 1, 1)).unsqueeze(1).to(x.dtype)
            # x where 0, the baseline where 1, exactly: a float blend (a bool select is several
            # times slower on CPUs)
            images = torch.addcmul(x[i] * (1.0 - occluded), baseline[i], occluded)
            return class_scores(ctx.model, images, y[i], softmax, ctx.rows(i))

        return map_chunks(len(rows), chunk_size(ctx, len(rows)), chunk)

    # the memo keys on images alone: a model with fixed inputs (one image, two questions) forwards every time
    memo = None if per_step_baseline or ctx.fixed else score_memo(ctx.cache, ctx.score_cache_mb)
    if memo is None:
        return score_rows(torch.arange(n * n_steps, device=x.device)).view(n, n_steps)
    scores = memoised_scores(memo, model=ctx.model, x=x, targets=y, baseline=baseline, softmax=softmax,
                             step_of_pixel=step_of_pixel, n_steps=n_steps, score_rows=score_rows)
    return scores.view(n, n_steps)
