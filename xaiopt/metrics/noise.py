"""Seeded random draws that are identical for every trial of a study (and cached per worker).

Draws are made on the CPU with a generator seeded from ``ctx.seed`` and a per-use key, then moved
to the device, so the numbers do not depend on the device, the chunking or the trial.
"""

from __future__ import annotations

import zlib
from typing import Any, Callable, Hashable

import torch
from torch import Tensor

from .context import MetricContext

# Above this many bytes a noise tensor is regenerated per call instead of kept in ctx.cache.
CACHE_LIMIT_BYTES = 512 * 2**20


def generator(seed: int, key: str) -> torch.Generator:
    """A CPU generator whose state depends only on the study seed and ``key``."""
    g = torch.Generator(device="cpu")
    g.manual_seed((int(seed) * 1_000_003 + zlib.crc32(key.encode())) % (2**63))
    return g


def cached(ctx: MetricContext, key: Hashable, make: Callable[[], Tensor], nbytes: int) -> Tensor:
    """``make()`` once per worker when small enough, else every time."""
    if nbytes > CACHE_LIMIT_BYTES:
        return make()
    full_key: Any = ("xaiopt.metrics", key, str(ctx.device))
    if full_key not in ctx.cache:
        ctx.cache[full_key] = make()
    return ctx.cache[full_key]


def uniform_noise(ctx: MetricContext, key: str, shape: tuple[int, ...], low: float, high: float) -> Tensor:
    """``shape`` i.i.d. draws from U(low, high), float32, on ctx's device."""

    def make() -> Tensor:
        g = generator(ctx.seed, f"{key}:{shape}:{low}:{high}")
        u = torch.rand(shape, generator=g, dtype=torch.float32)
        return (u * (high - low) + low).to(ctx.device)

    nbytes = 4 * int(torch.Size(shape).numel())
    return cached(ctx, ("uniform", key, shape, low, high, ctx.seed), make, nbytes)


def normal_noise(ctx: MetricContext, key: str, shape: tuple[int, ...], mean: float, std: float) -> Tensor:
    """``shape`` i.i.d. draws from N(mean, std^2), float32, on ctx's device."""

    def make() -> Tensor:
        g = generator(ctx.seed, f"{key}:{shape}:{mean}:{std}")
        return (torch.randn(shape, generator=g, dtype=torch.float32) * std + mean).to(ctx.device)

    nbytes = 4 * int(torch.Size(shape).numel())
    return cached(ctx, ("normal", key, shape, mean, std, ctx.seed), make, nbytes)
