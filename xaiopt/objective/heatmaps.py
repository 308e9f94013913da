"""Heatmap images of a trial's attributions (PNG, zennit's colour maps)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor
from zennit.image import imgify


def save_heatmap_grid(attributions: Tensor, path: str | Path, *, cmap: str = "bwr") -> Path:
    """Save (N,1,H,W) relevance maps side by side as one PNG, each symmetric around zero."""
    maps = attributions.detach().float().cpu()[:, 0]
    # each map scaled on its own so one strong sample does not wash out the others
    scale = maps.flatten(1).abs().amax(1).clamp_min(1e-12).view(-1, 1, 1)
    normed = (maps / scale).numpy()
    row = np.concatenate([np.pad(m, ((0, 0), (0, 2)), constant_values=0.0) for m in normed], axis=1)
    image = imgify(row, vmin=-1.0, vmax=1.0, cmap=cmap)
    path = Path(path)
    image.save(path)
    return path
