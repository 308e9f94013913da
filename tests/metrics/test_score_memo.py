"""The occlusion score memo: an image scored by an earlier trial is not forwarded again, and nothing
else (another model, input, target, baseline) is ever served from it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from xaiopt.metrics import get_metric
from xaiopt.metrics.batching import chunk_size
from xaiopt.metrics.score_memo import ENTRY_BYTES, ScoreMemo, score_memo

from .conftest import make_ctx

RP = {"patch_size": 4, "regions": 8}  # 16 patches of a 16x16 image, 8 steps


class Forwards:
    """Counts the images the model is run on (after the one-image probe that sizes the chunks)."""

    def __init__(self, model, ctx=None):
        if ctx is not None:
            chunk_size(ctx, 1)
        self.images = 0
        self.handle = model.register_forward_pre_hook(self._count)

    def _count(self, module, args):
        self.images += args[0].shape[0]

    def close(self):
        self.handle.remove()


def _rp(ctx, **extra):
    return get_metric("region_perturbation")(ctx, **{**RP, **extra})


def _patch_order(a: torch.Tensor) -> list[list[int]]:
    """Per sample, the 16 patches (4x4 of side 4) by descending attribution sum (ties: lower index)."""
    sums = a.double().sum(1).view(len(a), 4, 4, 4, 4).sum((2, 4)).reshape(len(a), 16)
    return [sorted(range(16), key=lambda p: (-float(row[p]), p)) for row in sums]


def _distinct_images(*attributions) -> list[int]:
    """The new occluded images each attribution adds, counted by hand: a set of (sample, patch set)."""
    seen, counts = set(), []
    for a in attributions:
        before = len(seen)
        for i, order in enumerate(_patch_order(a)):
            for k in range(1, RP["regions"] + 1):
                seen.add((i, frozenset(order[:k])))
        counts.append(len(seen) - before)
    return counts


def _second_attribution(a: torch.Tensor) -> torch.Tensor:
    """Another explanation that keeps the most relevant patches of ``a`` first and reorders the rest."""
    sums = a.sum(1).view(len(a), 4, 4, 4, 4).sum((2, 4)).reshape(len(a), 16)
    order = sums.argsort(dim=1, descending=True)
    new = torch.zeros(len(a), 16)
    g = torch.Generator().manual_seed(3)
    for i in range(len(a)):
        ranks = torch.cat([torch.arange(3), 3 + torch.randperm(13, generator=g)])  # top 3 kept, rest shuffled
        new[i, order[i]] = (16 - ranks).float()
    return new.view(len(a), 4, 4).repeat_interleave(4, 1).repeat_interleave(4, 2).unsqueeze(1)


def test_repeated_images_are_not_forwarded_and_scores_are_unchanged():
    ctx = make_ctx()
    a1 = ctx.attributions
    a2 = _second_attribution(a1)
    plain1 = _rp(ctx)
    plain2 = _rp(dataclasses.replace(ctx, attributions=a2))

    cache: dict = {}
    memo_ctx = dataclasses.replace(ctx, cache=cache, score_cache_mb=8)
    count = Forwards(ctx.model, memo_ctx)
    try:
        first = _rp(memo_ctx)
        after_first = count.images
        second = _rp(dataclasses.replace(memo_ctx, attributions=a2))
        after_second = count.images - after_first
        third = _rp(dataclasses.replace(memo_ctx, attributions=a2))
        after_third = count.images - after_first - after_second
    finally:
        count.close()
    expected_first, expected_second = _distinct_images(a1, a2)
    assert after_first == expected_first
    assert after_second == expected_second
    assert 0 < expected_second < len(a1) * RP["regions"]  # the shared prefixes were reused
    assert after_third == 0
    np.testing.assert_allclose(first.numpy(), plain1.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(second.numpy(), plain2.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(third.numpy(), plain2.numpy(), rtol=1e-6, atol=1e-7)
    memo = cache["xaiopt.metrics.score_memo"]
    assert memo.stats.hits == len(a1) * RP["regions"] * 3 - expected_first - expected_second
    assert len(memo) == expected_first + expected_second


@pytest.mark.parametrize("change", ["weights", "model", "inputs", "targets", "baseline", "softmax"])
def test_a_changed_context_is_never_served(change):
    ctx = make_ctx()
    memo_ctx = dataclasses.replace(ctx, cache={}, score_cache_mb=8)
    _rp(memo_ctx)
    extra = {}
    if change == "weights":
        with torch.no_grad():
            ctx.model[0].weight.data.mul_(1.5)  # in place, bypassing the version counter
    elif change == "model":
        other = make_ctx().model
        memo_ctx = dataclasses.replace(memo_ctx, model=other)
    elif change == "inputs":
        memo_ctx = dataclasses.replace(memo_ctx, x=memo_ctx.x + 0.01)
    elif change == "targets":
        memo_ctx = dataclasses.replace(memo_ctx, y=(memo_ctx.y + 1) % 5)
    elif change == "baseline":
        extra = {"baseline": "white"}
    elif change == "softmax":
        extra = {"softmax": False}
    with torch.no_grad():
        logits = memo_ctx.model(memo_ctx.x)
    memo_ctx = dataclasses.replace(memo_ctx, logits=logits)
    plain = _rp(dataclasses.replace(memo_ctx, cache={}, score_cache_mb=0), **extra)
    count = Forwards(memo_ctx.model, memo_ctx)
    try:
        kept = _rp(memo_ctx, **extra)
    finally:
        count.close()
    assert count.images == sum(_distinct_images(memo_ctx.attributions))
    np.testing.assert_allclose(kept.numpy(), plain.numpy(), rtol=1e-6, atol=1e-7)


def test_uniform_baseline_is_never_kept():
    ctx = dataclasses.replace(make_ctx(), cache={}, score_cache_mb=8)
    _rp(ctx, baseline="uniform")
    count = Forwards(ctx.model)
    try:
        _rp(ctx, baseline="uniform")
    finally:
        count.close()
    assert count.images == len(ctx.x) * RP["regions"]


def test_pixel_flipping_shares_the_memo_with_region_perturbation():
    # pixel flipping with 16-pixel steps in the patch order of region perturbation occludes the same sets
    ctx = dataclasses.replace(make_ctx(), cache={}, score_cache_mb=8)
    blocky = ctx.attributions.view(len(ctx.x), 1, 4, 4, 4, 4).sum((3, 5))  # patch sums
    blocky = blocky + torch.arange(16.0).flip(0).view(1, 1, 4, 4) * 1e-3  # no ties between patches
    a = blocky.repeat_interleave(4, 2).repeat_interleave(4, 3)
    a = a + torch.linspace(0, 1e-6, 16).view(1, 1, 4, 4).repeat(1, 1, 4, 4)  # pixels of a patch in row order
    pf_ctx = dataclasses.replace(ctx, attributions=a)
    _rp(pf_ctx)
    count = Forwards(ctx.model)
    try:
        flipped = get_metric("pixel_flipping")(pf_ctx, features_in_step=16)
    finally:
        count.close()
    assert torch.isfinite(flipped).all()
    # each 16-pixel step of pixel flipping occludes one more whole patch, in region perturbation's order:
    # its first 8 images were scored by region perturbation, only the other 8 per sample are new
    assert count.images == len(ctx.x) * (16 - RP["regions"])
    plain = get_metric("pixel_flipping")(dataclasses.replace(pf_ctx, cache={}, score_cache_mb=0), features_in_step=16)
    np.testing.assert_allclose(flipped.numpy(), plain.numpy(), rtol=1e-6, atol=1e-7)


def test_keys_are_set_keys():
    memo = ScoreMemo(1)
    steps = torch.tensor([[[0, 1], [1, 3]]])  # one sample, 2x2 pixels; step 2 occludes nothing
    keys = memo.image_keys(steps, 4)
    assert keys.shape == (4, 5)
    assert torch.equal(keys[1], keys[2])  # the same set after steps 0..1 and 0..2
    assert len({tuple(k.tolist()) for k in keys}) == 3
    assert keys[:, 1].tolist() == [1, 3, 3, 4]  # occluded pixel counts
    # the same pixel sets in another sample: the same counts, other hashes
    both = memo.image_keys(torch.cat([steps, steps]), 4)
    assert torch.equal(both[4:, 1], both[:4, 1]) and both[4:, 0].eq(1).all()
    assert (both[4:, 2:] != both[:4, 2:]).all()


def test_budget_bounds_what_is_kept():
    ctx = make_ctx()
    budget_entries = 20
    cache: dict = {}
    memo = score_memo(cache, budget_entries * ENTRY_BYTES / 2**20)
    _rp(dataclasses.replace(ctx, cache=cache, score_cache_mb=memo.budget_mb))
    assert len(memo) == budget_entries
    assert memo.used_bytes() <= memo.budget_bytes
    assert memo.stats.not_kept == sum(_distinct_images(ctx.attributions)) - budget_entries
    assert score_memo(cache, 0) is None
