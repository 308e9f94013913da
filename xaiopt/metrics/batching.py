"""Chunked evaluation so that no forward pass exceeds ``ctx.batch_budget`` images."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn


def chunk_bounds(total: int, budget: int):
    """Yield ``(start, stop)`` covering ``range(total)`` in pieces of at most ``budget``."""
    budget = max(1, int(budget))
    for start in range(0, total, budget):
        yield start, min(start + budget, total)


def map_chunks(total: int, budget: int, fn: Callable[[int, int], Tensor]) -> Tensor:
    """Concatenate ``fn(start, stop)`` over all chunks along dim 0."""
    return torch.cat([fn(start, stop) for start, stop in chunk_bounds(total, budget)], dim=0)


def class_scores(model: nn.Module, x: Tensor, targets: Tensor, softmax: bool,
                 fixed: tuple[Tensor, ...] = ()) -> Tensor:
    """One forward pass (no grad): the logit or softmax probability of ``targets`` (``fixed``: the
    model's inputs after ``x``, one row per image)."""
    with torch.no_grad():
        out = model(x, *fixed)
        if softmax:
            out = torch.softmax(out, dim=-1)
        return out.gather(1, targets.view(-1, 1).to(out.device)).squeeze(1)


def clean_scores(logits: Tensor, targets: Tensor, softmax: bool) -> Tensor:
    """The same quantity as :func:`class_scores` from precomputed clean logits."""
    out = torch.softmax(logits, dim=-1) if softmax else logits
    return out.gather(1, targets.view(-1, 1).to(out.device)).squeeze(1)


# On a CPU a forward runs fastest per image while the largest activation of the chunk stays
# around this size (it stays in the caches): 32-64 images of the 64x64 benchmark VGG (16 x 64 x 64
# floats per image after the first conv), 4-8 of ResNet-18 at 224 (64 x 112 x 112); 256 images run
# 2-3x slower per image than 32 on the VGG (benchmarks/metrics_vs_quantus.py, docs/metrics.md).
CPU_CHUNK_BYTES = 16 * 2**20


def largest_activation_bytes(model: nn.Module, x: Tensor, fixed: tuple[Tensor, ...] = ()) -> int:
    """Bytes of the largest output of any leaf module for one image of ``x``'s shape."""
    sizes = [0]
    handles = [
        m.register_forward_hook(
            lambda m, i, o: sizes.append(o.numel() * o.element_size() if isinstance(o, Tensor) else 0))
        for m in model.modules()
        if next(m.children(), None) is None
    ]
    try:
        with torch.no_grad():
            model(x[:1], *(f[:1] for f in fixed))
    finally:
        for h in handles:
            h.remove()
    return max(sizes)


def images_per_pass(model: nn.Module, x: Tensor, *, budget: int, images: int, cache: dict,
                    fixed: tuple[Tensor, ...] = ()) -> int:
    """Images per forward pass or explain call of ``model`` on inputs shaped like ``x``: at most
    ``budget`` (and ``images``).

    On the CPU, the largest power of two whose biggest activation fits ``CPU_CHUNK_BYTES`` (at
    least 1): bigger batches are slower per image there. On other devices the budget itself.
    Measured once per worker (``cache``).
    """
    budget = max(1, min(int(budget), int(images)))
    if x.device.type != "cpu":
        return budget
    key = ("xaiopt.metrics.activation_bytes", id(model), tuple(x.shape[1:]), x.dtype)
    if key not in cache:
        cache[key] = largest_activation_bytes(model, x, fixed)
    fits = max(1, CPU_CHUNK_BYTES // max(1, cache[key]))
    return min(budget, 1 << (fits.bit_length() - 1))


def chunk_size(ctx, images: int) -> int:
    """:func:`images_per_pass` for the metric context's model, inputs, budget and cache."""
    return images_per_pass(ctx.model, ctx.x, budget=ctx.batch_budget, images=images, cache=ctx.cache,
                           fixed=ctx.fixed)
