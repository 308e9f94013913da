"""One mechanism behind region perturbation and pixel flipping: occlude pixels in a given order.

Every pixel gets the step at which it is replaced (``step_of_pixel``); the image after ``k`` steps
keeps the pixels with step >= k and shows the baseline elsewhere. All (sample, step) images are
built on the fly, chunk by chunk, and scored in forward passes of at most ``ctx.batch_budget``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .batching import chunk_size, class_scores, map_chunks
from .context import MetricContext
from .noise import uniform_noise

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
    ctx: MetricContext, *, step_of_pixel: Tensor, n_steps: int, baseline: Tensor, softmax: bool
) -> Tensor:
    """(N, n_steps): the target score after occluding steps 0..k-1, for k = 1..n_steps."""
    x, y = ctx.x, ctx.y.to(ctx.device)
    n = x.shape[0]

    def chunk(start: int, stop: int) -> Tensor:
        j = torch.arange(start, stop, device=x.device)
        i, k = j // n_steps, j % n_steps + 1
        occluded = (step_of_pixel[i] < k.view(-1, 1, 1)).unsqueeze(1)
        images = torch.where(occluded, baseline[i], x[i])
        return class_scores(ctx.model, images, y[i], softmax)

    return map_chunks(n * n_steps, chunk_size(ctx, n * n_steps), chunk).view(n, n_steps)
