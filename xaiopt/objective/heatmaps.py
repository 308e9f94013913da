"""Heatmap images of a trial's attributions (PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor


def bwr(values: np.ndarray) -> np.ndarray:
    """Map values in [-1, 1] to RGB uint8: negative blue, zero white, positive red."""
    v = np.clip(values, -1.0, 1.0)
    r = np.minimum(1.0, 1.0 + v)
    g = 1.0 - np.abs(v)
    b = np.minimum(1.0, 1.0 - v)
    return (np.stack([r, g, b], axis=-1) * 255.0 + 0.5).astype(np.uint8)


def _row(tiles: np.ndarray, gap: int = 2) -> np.ndarray:
    """(N,H,W,3) tiles -> (H, N*W + gaps, 3), separated by dark grey columns."""
    n, h, w, _ = tiles.shape
    out = np.full((h, n * w + (n - 1) * gap, 3), 64, dtype=np.uint8)
    for i in range(n):
        out[:, i * (w + gap): i * (w + gap) + w] = tiles[i]
    return out


def save_heatmap_grid(attributions: Tensor, path: str | Path, *, images: Tensor | None = None,
                      low: Tensor | None = None, high: Tensor | None = None, scale: int = 3) -> Path:
    """Save (N,1,H,W) relevance maps side by side as one PNG, each symmetric around zero.

    With ``images`` (N,C,H,W) in the model's input space and its bounds ``low``/``high``, the
    inputs are shown in a row above their heatmaps.
    """
    maps = attributions.detach().double().cpu()[:, 0]
    # each map scaled on its own so one strong sample does not wash out the others
    peak = maps.flatten(1).abs().amax(1).clamp_min(1e-12).view(-1, 1, 1)
    rgb = _row(bwr((maps / peak).numpy()))
    if images is not None:
        img = images.detach().double().cpu()
        if low is not None and high is not None:
            lo, hi = low.double().cpu().view(1, -1, 1, 1), high.double().cpu().view(1, -1, 1, 1)
            img = (img - lo) / (hi - lo).clamp_min(1e-12)
        img = img.clamp(0, 1)
        if img.shape[1] == 1:
            img = img.expand(-1, 3, -1, -1)
        tiles = (img[:, :3].permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
        rgb = np.concatenate([_row(tiles), np.full((2, rgb.shape[1], 3), 64, np.uint8), rgb], axis=0)
    image = Image.fromarray(rgb, mode="RGB")
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    path = Path(path)
    image.save(path)
    return path
