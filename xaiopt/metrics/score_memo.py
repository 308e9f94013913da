"""Occlusion scores kept across trials: an occluded image seen before is not forwarded again.

Region perturbation and pixel flipping score images of the form "sample ``i`` with the pixel set
``S`` replaced by the baseline". Within a study the samples, the baseline and the model never
change; only the order in which an explanation occludes pixels does. Two explanations that agree
on which patches come first therefore produce the *same* occluded images for their first steps
(on the quickstart study about half of all region-perturbation images of a trial were already
scored by an earlier trial). :class:`ScoreMemo` keeps each scored image's score, keyed by

* the context: the model (:func:`xaiopt.fingerprint.model_fingerprint`, with a weak reference so
  that a recycled ``id`` never matches), the inputs, the targets and the baseline images (BLAKE2b
  digests of their bytes), and whether the softmax is scored;
* the image: the sample index, the number of occluded pixels and three independent 40-bit sums of
  per-pixel random values over the occluded set (a set hash: computed for all steps at once with a
  scatter-add and a cumulative sum on the device). A wrong score would need two different pixel
  sets of one sample to agree on the count and on all three sums (a chance of about 2**-120 per
  pair), so a kept score is the score of the same image.

A score found here was computed in another forward batch than the one the trial would have run, so
it may differ from a fresh one by the last bits of float32 (batch composition changes the order of
the convolution's sums); tests bound this by 1e-6 relative. The memo holds at most ``budget_mb``
megabytes (44 bytes per image); past it, new scores are not kept. ``runtime.score_cache_mb: 0``
turns it off. Baselines that differ per step (``uniform``) are never kept: their occluded image
depends on the step each pixel was occluded at, not only on the set.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from xaiopt.fingerprint import HitCounts, model_fingerprint, tensor_fingerprint

logger = logging.getLogger(__name__)

_HASHES = 3
_HASH_BITS = 40  # values < 2**40: a sum over up to 2**22 pixels and a sample offset stays below 2**63
_COLUMNS = 2 + _HASHES  # sample, count, hashes
ENTRY_BYTES = _COLUMNS * 8 + 4


@dataclass
class _Table:
    """Kept scores of one context: ``keys`` (M, 5) sorted by the first hash, ``values`` (M,)."""

    keys: Tensor
    values: Tensor
    model_ref: weakref.ref


@dataclass
class MemoStats(HitCounts):
    not_kept: int = 0


@dataclass
class ScoreMemo:
    """Scores of occluded images within ``budget_mb`` megabytes, for all contexts of a worker."""

    budget_mb: float = 64.0
    stats: MemoStats = field(default_factory=MemoStats)

    def __post_init__(self) -> None:
        self._tables: dict[tuple, _Table] = {}
        self._pixel_values: dict[tuple, Tensor] = {}

    @property
    def budget_bytes(self) -> int:
        return int(self.budget_mb * 2**20)

    def used_bytes(self) -> int:
        return sum(len(t.values) for t in self._tables.values()) * ENTRY_BYTES

    def __len__(self) -> int:
        return sum(len(t.values) for t in self._tables.values())

    def context_key(self, model: nn.Module, x: Tensor, targets: Tensor, baseline: Tensor, softmax: bool) -> tuple:
        return (model_fingerprint(model), tensor_fingerprint(x), tensor_fingerprint(targets),
                tensor_fingerprint(baseline), bool(softmax))

    def image_keys(self, step_of_pixel: Tensor, n_steps: int) -> Tensor:
        """(N * n_steps, 5) int64 keys of the images "sample i after k steps", rows ordered (i, k)."""
        n = step_of_pixel.shape[0]
        flat = step_of_pixel.reshape(n, -1).clamp(max=n_steps)  # n_steps: never occluded
        pixels = flat.shape[1]
        values = self._values(pixels, step_of_pixel.device)  # (1 + hashes, P): ones, then the hashes
        sums = torch.zeros(values.shape[0], n, n_steps + 1, dtype=torch.int64, device=flat.device)
        sums.scatter_add_(2, flat.unsqueeze(0).expand(values.shape[0], n, pixels),
                          values.unsqueeze(1).expand(values.shape[0], n, pixels))
        cumulative = sums[:, :, :n_steps].cumsum(2)  # the set of steps 0..k-1
        # a random offset per sample, so that one pixel set in two samples hashes apart (the lookup
        # sorts by the first hash)
        cumulative[1:] += self._values(n, flat.device, salt=1)[1:].unsqueeze(2)
        sample = torch.arange(n, device=flat.device).view(1, n, 1).expand(1, n, n_steps)
        return torch.cat([sample, cumulative]).reshape(_COLUMNS, -1).T.contiguous()

    def _values(self, count: int, device: torch.device, salt: int = 0) -> Tensor:
        """(1 + hashes, count): ones, then random values below 2**40 (fixed by ``count`` and ``salt``)."""
        key = (count, salt, str(device))
        if key not in self._pixel_values:
            gen = torch.Generator().manual_seed(0x5C0E + 2 * count + salt)
            hashes = torch.randint(0, 2**_HASH_BITS, (_HASHES, count), generator=gen, dtype=torch.int64)
            self._pixel_values[key] = torch.cat([torch.ones(1, count, dtype=torch.int64), hashes]).to(device)
        return self._pixel_values[key]

    def lookup(self, context: tuple, keys: Tensor, model: nn.Module) -> tuple[Tensor, Tensor]:
        """``(found, values)``: which rows of ``keys`` are kept, and their scores (0 where not)."""
        table = self._tables.get(context)
        if table is not None and table.model_ref() is not model:
            del self._tables[context]
            table = None
        if table is None or len(table.values) == 0:
            return torch.zeros(len(keys), dtype=torch.bool, device=keys.device), None
        pos = torch.searchsorted(table.keys[:, 2].contiguous(), keys[:, 2].contiguous())
        pos = pos.clamp(max=len(table.values) - 1)
        found = (table.keys[pos] == keys).all(dim=1)
        return found, table.values[pos]

    def store(self, context: tuple, keys: Tensor, values: Tensor, model: nn.Module) -> None:
        room = (self.budget_bytes - self.used_bytes()) // ENTRY_BYTES
        if room < len(keys):
            self.stats.not_kept += len(keys) - max(room, 0)
            keys, values = keys[:max(room, 0)], values[:max(room, 0)]
        if len(keys) == 0:
            return
        table = self._tables.get(context)
        if table is None:
            table = self._tables[context] = _Table(keys[:0], values[:0], weakref.ref(model))
        all_keys = torch.cat([table.keys, keys])
        all_values = torch.cat([table.values, values.to(table.values.dtype)])
        order = torch.argsort(all_keys[:, 2], stable=True)
        table.keys, table.values = all_keys[order], all_values[order]

    def resize(self, budget_mb: float) -> None:
        """A new budget; a smaller one drops whole contexts until the rest fits."""
        self.budget_mb = float(budget_mb)
        while self._tables and self.used_bytes() > self.budget_bytes:
            self._tables.pop(next(iter(self._tables)))

    def clear(self) -> None:
        self._tables.clear()


_MEMO_KEY = "xaiopt.metrics.score_memo"


def score_memo(cache: dict, budget_mb: float) -> ScoreMemo | None:
    """The worker's memo in ``cache`` (the per-worker cache of a MetricContext), resized to ``budget_mb``;
    ``None`` when the budget is 0."""
    if budget_mb <= 0:
        return None
    memo = cache.get(_MEMO_KEY)
    if memo is None:
        memo = cache[_MEMO_KEY] = ScoreMemo(budget_mb)
    elif memo.budget_mb != budget_mb:
        memo.resize(budget_mb)
    return memo


def memoised_scores(memo: ScoreMemo, *, model: nn.Module, x: Tensor, targets: Tensor, baseline: Tensor,
                    softmax: bool, step_of_pixel: Tensor, n_steps: int, score_rows) -> Tensor:
    """(N * n_steps,) scores of the images "sample i after k steps" (rows ordered (i, k)), computing
    with ``score_rows(rows)`` only the images neither kept nor repeated within this call."""
    if step_of_pixel[0].numel() > 2**22:  # the set hashes would overflow: every image is forwarded
        return score_rows(torch.arange(step_of_pixel.shape[0] * n_steps, device=x.device))
    context = memo.context_key(model, x, targets, baseline, softmax)
    keys = memo.image_keys(step_of_pixel, n_steps)
    found, kept = memo.lookup(context, keys, model)
    missing = (~found).nonzero().squeeze(1)
    # equal images within the call (a step that occludes no pixel repeats the previous image)
    distinct, inverse = torch.unique(keys[missing], dim=0, return_inverse=True)
    first = torch.full((len(distinct),), len(missing), dtype=torch.long, device=keys.device)
    first = first.scatter_reduce(0, inverse, torch.arange(len(missing), device=keys.device), reduce="amin")
    fresh = score_rows(missing[first]) if len(first) else torch.zeros(0, device=x.device)
    scores = torch.empty(len(keys), dtype=fresh.dtype if kept is None else kept.dtype, device=keys.device)
    if kept is not None:
        scores[found] = kept[found].to(scores.dtype)
    scores[missing] = fresh[inverse].to(scores.dtype)
    memo.store(context, distinct, fresh, model)
    memo.stats.hits += int(found.sum())
    memo.stats.misses += len(first)
    logger.debug("occlusion score memo: %d of %d images kept, %d scored (hit rate %.0f%%, %d kept, %.1f MB)",
                 int(found.sum()), len(keys), len(first), 100 * memo.stats.hit_rate, len(memo),
                 memo.used_bytes() / 2**20)
    return scores
