"""Reference explanations: what a study's metrics score when no search is involved.

Every study scores these once, on its evaluation batch, with its own metrics (study user attr
``xaiopt:references``): a metric that ranks the random reference as high as the recommended LRP setting
cannot tell an explanation from noise on this model and data (Miro-Nicolau et al., 2024), and its vote
deserves a flag (:mod:`xaiopt.analysis.sanity`).

- ``random``: uniform noise in [-1, 1], a deterministic hash of the input, the target and the study's
  seed: the same call gives the same map (as any explainer), while another target or a perturbed
  input gives another one.
- ``sobel``: the magnitude of the Sobel gradient of the input, channels summed: an edge detector that
  ignores the model and the class.
- ``gradient``: the gradient of the target logit by the input, channels summed (signed).
- ``input_x_gradient``: input times that gradient, channels summed.

Each is an explain function ``explain(x, targets) -> (N, 1, H, W)`` as the trials' LRP explainer is,
batched by ``batch_budget`` images, so every metric (randomization included: it re-explains a
randomized copy of the model) scores it the way it scores a trial.

Example::

    explain = reference_explainer("gradient", model, seed=0, batch_budget=64)
    relevance = explain(x, y)              # (N, 1, H, W)
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xaiopt.lrp.engine import sample_chunks

REFERENCES = ("random", "sobel", "gradient", "input_x_gradient")

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def sobel(x: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, 1, H, W): sum over channels of sqrt(gx^2 + gy^2), replicate padding."""
    kx = _SOBEL_X.to(device=x.device, dtype=x.dtype)
    kernel = torch.stack([kx, kx.T])[:, None]  # (2, 1, 3, 3): d/dx, d/dy
    flat = F.pad(x.reshape(-1, 1, *x.shape[2:]), (1, 1, 1, 1), mode="replicate")
    g = F.conv2d(flat, kernel)  # (N*C, 2, H, W)
    magnitude = g.pow(2).sum(1).sqrt().reshape(x.shape)
    return magnitude.sum(1, keepdim=True)


def random_map(x: Tensor, targets: Tensor, *, seed: int) -> Tensor:
    """(N, C, H, W), (N,) -> (N, 1, H, W) uniform noise in [-1, 1] that depends only on each sample's
    values, its target and ``seed`` (a sine hash of a fixed random projection of the sample; float64)."""
    n, h, w = x.shape[0], x.shape[2], x.shape[3]
    projection = torch.randn(x.shape[1:], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    key = (x.detach().to(torch.float64) * projection.to(x.device)).flatten(1).sum(1)
    key = key + 0.6180339887 * targets.to(device=x.device, dtype=torch.float64) + 0.1 * seed
    pixel = torch.arange(h * w, device=x.device, dtype=torch.float64)
    u = torch.frac(torch.sin(key[:, None] * 12.9898 + pixel[None, :] * 78.233).abs() * 43758.5453)
    return (2.0 * u - 1.0).view(n, 1, h, w).to(x.dtype)


def _gradient(model: nn.Module, x: Tensor, targets: Tensor, *, times_input: bool,
              fixed: tuple[Tensor, ...] = ()) -> Tensor:
    with torch.enable_grad():
        inp = x.detach().clone().requires_grad_(True)
        out = model(inp, *fixed)
        picked = out.gather(1, targets.to(out.device).long().view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(picked, inp)
    rel = grad * inp.detach() if times_input else grad
    return rel.sum(1, keepdim=True).detach()


def reference_explainer(name: str, model: nn.Module, *, seed: int, batch_budget: int
                        ) -> Callable[..., Tensor]:
    """The explain function of reference ``name`` (one of :data:`REFERENCES`) on ``model``."""
    if name not in REFERENCES:
        raise ValueError(f"unknown reference explanation {name!r} (valid: {', '.join(REFERENCES)})")

    def one(x: Tensor, targets: Tensor, fixed: tuple[Tensor, ...]) -> Tensor:
        if name == "random":
            return random_map(x, targets, seed=seed)
        if name == "sobel":
            return sobel(x.detach())
        return _gradient(model, x, targets, times_input=name == "input_x_gradient", fixed=fixed)

    def explain(x: Tensor, targets: Tensor, fixed: tuple[Tensor, ...] = ()) -> Tensor:
        """``fixed``: the model's inputs after ``x``, one row per sample (split with the chunks)."""
        return torch.cat([one(xc, tc, fc) for xc, tc, fc in sample_chunks(x, targets, fixed, batch_budget)])

    return explain
