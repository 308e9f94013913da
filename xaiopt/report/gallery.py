"""Heatmap gallery: the recommended setting beside the compromise and the baselines, on the same images.

The attributions are recomputed now (:func:`xaiopt.study.attribute.attribute_settings`) on the
study's first K evaluation images, one batched pass per setting. Each map is drawn as zennit's
``imgify(symmetric=True)`` draws it, with its ``bwr`` palette: symmetric around 0 (red: relevance
for the explained class, blue: against, white: none), scaled per map; where the data has object
masks, each mask is outlined in green (``Gallery.masks`` says whether it has). Small images are
enlarged by whole pixels (nearest neighbour) to at least :data:`TILE` pixels, large ones are kept
as they are: the report scales every tile to the page's width.

Example::

    gallery = heatmap_gallery(loaded, rec=recommend(loaded), images=4)
    gallery.rows[0].label        # 'recommended · trial 9'
    gallery.masks                # True: the benchmark's object masks are outlined
    open("row0.png", "wb").write(gallery.rows[0].tiles[0])
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from zennit.image import interval_norm_bounds, palette

from xaiopt.analysis import Recommendation
from xaiopt.objective.attrs import explainer_text, spec_dict
from xaiopt.report.profile import profile_rows
from xaiopt.report.view import study_view
from xaiopt.study import LoadedStudy
from xaiopt.study.attribute import attribute_settings

# the smallest side a tile is enlarged to (whole pixels): 64-px images are drawn 3x, 224-px ones 1x
TILE = 192
OUTLINE = np.array([0, 200, 0], dtype=np.uint8)
CMAP = "bwr"
# zennit's palette level: above 1 saturates earlier, so faint relevance stays visible
LEVEL = 2.0


@dataclass(frozen=True)
class GalleryRow:
    label: str
    number: int
    explainer: str
    tiles: list[bytes]


@dataclass(frozen=True)
class Gallery:
    """PNG tiles: ``inputs`` (one per image) and one row per setting; ``columns`` name each image's target.

    ``masks``: whether the data has object masks (outlined in green on every tile); ``size``: a
    tile's (width, height) in pixels.
    """

    columns: list[str]
    inputs: list[bytes]
    rows: list[GalleryRow]
    masks: bool
    size: tuple[int, int]


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def scale_for(height: int, width: int) -> int:
    """The whole-pixel enlargement of an image of this size: its shorter side to at least :data:`TILE`."""
    return max(1, math.ceil(TILE / max(1, min(height, width))))


def _upscale(x: torch.Tensor, scale: int) -> torch.Tensor:
    return x if scale == 1 else F.interpolate(x, scale_factor=scale, mode="nearest")


def _outline(masks: torch.Tensor | None, scale: int) -> torch.Tensor | None:
    """(K,1,H,W) mask -> (K,H*S,W*S) bool: a ring two pixels wide just inside the object's edge."""
    if masks is None:
        return None
    m = _upscale((masks > 0.5).float(), scale)
    eroded = -F.max_pool2d(-m, kernel_size=5, stride=1, padding=2)
    return ((m - eroded) > 0.5)[:, 0]


def _inputs(images: torch.Tensor, low: torch.Tensor, high: torch.Tensor, scale: int) -> np.ndarray:
    """(K,C,H,W) model inputs -> (K,H*S,W*S,3) uint8 in [0, 255]."""
    img = (images.double() - low.double()) / (high.double() - low.double()).clamp_min(1e-12)
    img = _upscale(img.clamp(0, 1), scale)
    if img.shape[1] == 1:
        img = img.expand(-1, 3, -1, -1)
    return (img[:, :3].permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)


def _heatmaps(attributions: torch.Tensor, scale: int) -> np.ndarray:
    """(K,1,H,W) relevance -> (K,H*S,W*S,3) uint8: zennit's symmetric interval norm and its colour
    palette, all maps at once (what ``imgify(symmetric=True)`` does per map, without its palette
    image, which Pillow >= 12 no longer accepts as a NumPy array)."""
    maps = _upscale(attributions.double(), scale)[:, 0].numpy()
    low, high = interval_norm_bounds(maps, symmetric=True, dim=(1, 2))
    unit = (maps - low) / np.where(high > low, high - low, 1.0)
    index = (unit * 255 + 0.5).clip(0, 255).astype(np.uint8)  # 0 -> 128, the palette's white
    return palette(CMAP, level=LEVEL)[index]


def gallery_rows(loaded: LoadedStudy, rec: Recommendation) -> list[tuple[str, int]]:
    """(label, trial number) of each gallery row: recommended, compromise, baselines."""
    return [(f"{role} · trial {number}", number) for role, number in profile_rows(loaded, rec)]


def heatmap_gallery(loaded: LoadedStudy, rec: Recommendation, images: int, *, device: str | None = None) -> Gallery:
    """Draw the gallery on the study's first ``images`` evaluation images (attributions recomputed now)."""
    view = study_view(loaded, rec)
    rows = gallery_rows(loaded, rec)
    trials = [view.settings[view.index(n)] for _, n in rows]
    got = attribute_settings(loaded, [spec_dict(t) for t in trials], images, device=device)
    scale = scale_for(*got.images.shape[2:])
    ring = _outline(got.masks, scale)
    inputs = _inputs(got.images, got.low, got.high, scale)
    if ring is not None:
        inputs[ring.numpy()] = OUTLINE
    out = []
    for (label, number), t, attr in zip(rows, trials, got.attributions):
        tiles = _heatmaps(attr, scale)
        if ring is not None:
            tiles[ring.numpy()] = OUTLINE
        out.append(GalleryRow(label=label, number=number, explainer=explainer_text(t),
                              tiles=[_png(x) for x in tiles]))
    columns = [f"image {k} · class {name}" for k, name in enumerate(got.target_names)]
    return Gallery(columns=columns, inputs=[_png(x) for x in inputs], rows=out, masks=ring is not None,
                   size=(int(inputs.shape[2]), int(inputs.shape[1])))
