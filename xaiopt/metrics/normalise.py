"""Attribution post-processing shared by the metrics (Quantus's ``abs`` / ``normalise`` flags)."""

from __future__ import annotations

from torch import Tensor


def normalise_by_max(a: Tensor) -> Tensor:
    """Divide each sample by its largest absolute value; all-zero samples stay zero.

    Quantus 0.6 applies ``normalise_by_max`` to the whole batch at once (one maximum for all
    samples), which makes a sample's score depend on its batch; we normalise per sample.
    """
    flat = a.reshape(a.shape[0], -1)
    peak = flat.abs().amax(dim=1)
    peak = peak.where(peak > 0, peak.new_ones(()))
    return a / peak.view(-1, *([1] * (a.dim() - 1)))


def prepare(a: Tensor, *, abs: bool, normalise: bool) -> Tensor:
    """Quantus's order of operations: normalise first, then take the absolute value."""
    a = a.float()
    if normalise:
        a = normalise_by_max(a)
    if abs:
        a = a.abs()
    return a
