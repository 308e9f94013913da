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


def save_heatmap_grid(attributions: Tensor, path: str | Path, *, scale: int = 3) -> Path:
    """Save (N,1,H,W) relevance maps side by side as one PNG, each symmetric around zero."""
    maps = attributions.detach().double().cpu()[:, 0]
    # each map scaled on its own so one strong sample does not wash out the others
    peak = maps.flatten(1).abs().amax(1).clamp_min(1e-12).view(-1, 1, 1)
    normed = (maps / peak).numpy()
    gap = np.full((normed.shape[1], 2), np.nan)
    row = np.concatenate([np.concatenate([m, gap], axis=1) for m in normed], axis=1)[:, :-2]
    rgb = bwr(np.nan_to_num(row, nan=0.0))
    rgb[np.isnan(row)] = 64
    image = Image.fromarray(rgb, mode="RGB")
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    path = Path(path)
    image.save(path)
    return path
