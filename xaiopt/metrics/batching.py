"""Chunked evaluation so that no forward pass exceeds ``ctx.batch_budget`` images."""

from __future__ import annotations

import time
from typing import Callable, Hashable

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


def class_scores(model: nn.Module, x: Tensor, targets: Tensor, softmax: bool) -> Tensor:
    """One forward pass (no grad): the logit or softmax probability of ``targets``."""
    with torch.no_grad():
        out = model(x)
        if softmax:
            out = torch.softmax(out, dim=-1)
        return out.gather(1, targets.view(-1, 1).to(out.device)).squeeze(1)


def clean_scores(logits: Tensor, targets: Tensor, softmax: bool) -> Tensor:
    """The same quantity as :func:`class_scores` from precomputed clean logits."""
    out = torch.softmax(logits, dim=-1) if softmax else logits
    return out.gather(1, targets.view(-1, 1).to(out.device)).squeeze(1)


# Chunk sizes tried by the tuner: powers of two up to the budget (and the budget itself).
_MIN_CHUNK = 4


def _candidates(budget: int) -> list[int]:
    sizes, k = [], _MIN_CHUNK
    while k < budget:
        sizes.append(k)
        k *= 2
    return sizes + [max(1, int(budget))]


def fastest_chunk(cache: dict, key: Hashable, budget: int, run: Callable[[int], object]) -> int:
    """The chunk size <= ``budget`` with the best time per image for ``run(k)``, measured once per key.

    A bigger batch is not always faster: on a CPU, 256 images of a small CNN run slower per image
    than 32 (the activations leave the cache), and ResNet-18 at 224x224 is fastest at 4-8. Sizes
    from 4 up are timed once each (after one warm-up); the search stops when two sizes in a row
    are 25% slower per image than the best. The result is kept in ``cache`` (``ctx.cache``).
    """
    full_key = ("xaiopt.metrics.chunk", key, int(budget))
    if full_key in cache:
        return cache[full_key]
    sizes = _candidates(budget)
    if len(sizes) == 1:
        cache[full_key] = sizes[0]
        return sizes[0]
    run(sizes[0])  # warm-up: first-call allocations
    best, best_rate, worse = sizes[0], float("inf"), 0
    for k in sizes:
        start = time.perf_counter()
        run(k)
        rate = (time.perf_counter() - start) / k
        if rate < best_rate:
            best, best_rate, worse = k, rate, 0
        elif rate > 1.25 * best_rate:
            worse += 1
            if worse == 2:
                break
    cache[full_key] = best
    return best


def forward_chunk(ctx, images: int) -> int:
    """Chunk size for no-grad forward passes of ctx.model on ctx.x-shaped images (tuned, cached).

    With fewer images than the smallest candidates' sum, tuning would cost more than it saves:
    then the budget is used as is.
    """
    budget = min(ctx.batch_budget, images)
    if images < 4 * _MIN_CHUNK * 8:
        return budget
    x = ctx.x

    def run(k: int) -> None:
        with torch.no_grad():
            ctx.model(x[torch.arange(k, device=x.device) % len(x)])

    return fastest_chunk(ctx.cache, ("forward", id(ctx.model), tuple(x.shape[1:]), str(x.device)), budget, run)


def explain_chunk(ctx, images: int) -> int:
    """Chunk size for ``ctx.explain`` calls (tuned once per worker with the first trial's explainer)."""
    budget = min(ctx.batch_budget, images)
    if images < 4 * _MIN_CHUNK * 8:
        return budget
    x, y = ctx.x, ctx.y

    def run(k: int) -> None:
        idx = torch.arange(k, device=x.device) % len(x)
        ctx.explain(x[idx], y[idx].to(x.device))

    return fastest_chunk(ctx.cache, ("explain", id(ctx.model), tuple(x.shape[1:]), str(x.device)), budget, run)


def forward_chunk_size(model: nn.Module, x: Tensor, budget: int, cache: dict | None = None) -> int:
    """:func:`forward_chunk` for a bare model (benchmarks)."""

    def run(k: int) -> None:
        with torch.no_grad():
            model(x[torch.arange(k, device=x.device) % len(x)])

    cache = {} if cache is None else cache
    return fastest_chunk(cache, ("forward", id(model), tuple(x.shape[1:]), str(x.device)), budget, run)
