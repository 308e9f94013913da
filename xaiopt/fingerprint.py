"""Fingerprints of models and tensors, for the caches that reuse work across the trials of a study.

Two caches keep results between trials because a study's inputs never change: the LRP engine's
recorded forwards (``xaiopt.lrp.cache``) and the occlusion scores of the faithfulness metrics
(``xaiopt.metrics.score_memo``). Both key what they keep by these fingerprints, so that another
model, changed weights or another input can never be served a kept result.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import Tensor, nn


def model_fingerprint(model: nn.Module) -> tuple:
    """Identity, storage and a value checksum of every parameter and buffer of ``model``.

    The object's ``id``, every tensor's storage address, version counter, shape, dtype and device,
    and a float64 checksum of the values (sum and 2-norm per tensor), which catches in-place edits
    that bypass the version counter (``p.data.normal_()``). An ``id`` can be recycled by a new
    object; callers that keep results across calls also hold a weak reference to the model.
    """
    tensors = [t.detach() for t in model.parameters()] + [t.detach() for t in model.buffers()]
    meta = tuple((t.data_ptr(), t._version, tuple(t.shape), t.dtype, str(t.device)) for t in tensors)
    with torch.no_grad():
        sums = [t.sum(dtype=torch.float64) for t in tensors]
        norms = [torch.linalg.vector_norm(t if t.is_floating_point() else t.double(), dtype=torch.float64)
                 for t in tensors]
        check = torch.stack(sums + norms).cpu().numpy().tobytes() if tensors else b""
    return (id(model), meta, hashlib.blake2b(check, digest_size=16).hexdigest())


def tensor_fingerprint(x: Tensor) -> tuple:
    """Shape, dtype, device and a BLAKE2b digest of the bytes of ``x``."""
    data = x.detach().contiguous().reshape(-1).view(torch.uint8).cpu().numpy()
    return (tuple(x.shape), x.dtype, str(x.device), hashlib.blake2b(data.tobytes(), digest_size=32).hexdigest())


@dataclass
class HitCounts:
    """Lookups of a cross-trial cache that found what they looked for, and those that did not."""

    hits: int = 0
    misses: int = 0

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0
