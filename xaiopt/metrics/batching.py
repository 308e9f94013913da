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
