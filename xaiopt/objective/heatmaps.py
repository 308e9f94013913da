"""Heatmap images of a trial's attributions (PNG), with a title and a label per image.

The image a trial uploads (optuna-dashboard shows it in the trial's Artifacts panel): a title band
(trial number, baseline name, the explainer settings, wrapped to the image's width), the inputs in a
row, their heatmaps below (red positive relevance, blue negative, each map scaled to its own peak),
and under each column the class it explains: its name when the dataset names its classes, else its
index, and whether it is the sample's label or the model's prediction (``data.target``).
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from xaiopt.files import write_atomic

FONT_SIZE = 12
LINE = 16      # pixels per text line (FONT_SIZE plus leading)
PAD = 4        # pixels around a text band
INK = (0, 0, 0)
PAPER = (255, 255, 255)


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


@lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=FONT_SIZE)  # Pillow >= 10.1 with FreeType: a scalable font
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _text_width(text: str) -> float:
    return _font().getlength(text)


def _cut(text: str, width: float) -> str:
    """``text`` shortened to ``width`` pixels, ending in an ellipsis when cut."""
    if _text_width(text) <= width:
        return text
    while text and _text_width(text + "…") > width:
        text = text[:-1]
    return text + "…" if text else ""


def wrap_text(text: str, width: float) -> list[str]:
    """``text`` in lines of at most ``width`` pixels, broken at spaces (a word longer than a line is cut)."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split():
            trial = f"{line} {word}" if line else word
            if _text_width(trial) <= width:
                line = trial
                continue
            if line:
                lines.append(line)
            line = _cut(word, width)
        lines.append(line)
    return lines


def _band(lines: list[str], width: int, centers: Sequence[float] | None = None) -> np.ndarray:
    """A white band of text lines (each centred on ``centers[i]`` when given, else left-aligned)."""
    height = len(lines) * LINE + 2 * PAD if centers is None else LINE + 2 * PAD
    band = Image.new("RGB", (width, height), PAPER)
    draw = ImageDraw.Draw(band)
    if centers is None:
        for i, line in enumerate(lines):
            draw.text((PAD, PAD + i * LINE), line, fill=INK, font=_font())
    else:
        for text, cx in zip(lines, centers):
            draw.text((cx - _text_width(text) / 2, PAD), text, fill=INK, font=_font())
    return np.asarray(band)


def target_labels(targets: Sequence[int], *, class_names: Sequence[str] = (), kind: str = "label",
                  predicted: Sequence[int] | None = None) -> list[str]:
    """The caption of each heatmap: the explained class's name (``class K`` without names) and whether
    it is the sample's label or the model's prediction (``kind``: ``label`` / ``predicted``); with
    ``predicted``, a label the model gets wrong also names the model's class (``label: circle, pred: plus``)."""
    def name(k: int) -> str:
        return class_names[k] if 0 <= k < len(class_names) else f"class {k}"

    word = "pred" if kind == "predicted" else "label"
    out = []
    for i, t in enumerate(targets):
        text = f"{word}: {name(int(t))}"
        if kind != "predicted" and predicted is not None and int(predicted[i]) != int(t):
            text += f", pred: {name(int(predicted[i]))}"
        out.append(text)
    return out


def save_heatmap_grid(attributions: Tensor, path: str | Path, *, images: Tensor | None = None,
                      low: Tensor | None = None, high: Tensor | None = None, scale: int = 3,
                      title: str | None = None, labels: Sequence[str] | None = None) -> Path:
    """Save (N,1,H,W) relevance maps side by side as one PNG, each symmetric around zero.

    With ``images`` (N,C,H,W) in the model's input space and its bounds ``low``/``high``, the
    inputs are shown in a row above their heatmaps. ``title`` (wrapped to the image's width) goes
    in a band above, ``labels`` (one per map, cut to the tile's width) in a band below.

    Example::

        save_heatmap_grid(attributions, "trial7.png", images=x, low=low, high=high,
                          title="trial 7: canonize=yes first=zbox ...", labels=["label: circle", "label: plus"])
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
    n, w = maps.shape[0], maps.shape[-1]
    if scale > 1:
        rgb = rgb.repeat(scale, axis=0).repeat(scale, axis=1)
    parts = []
    if title:
        parts.append(_band(wrap_text(title, rgb.shape[1] - 2 * PAD), rgb.shape[1]))
    parts.append(rgb)
    if labels is not None:
        if len(labels) != n:
            raise ValueError(f"labels: {len(labels)} given for {n} heatmaps")
        tile, gap = w * scale, 2 * scale
        centers = [i * (tile + gap) + tile / 2 for i in range(n)]
        parts.append(_band([_cut(label, tile - 2) for label in labels], rgb.shape[1], centers))
    image = Image.fromarray(np.concatenate(parts, axis=0), mode="RGB")
    png = io.BytesIO()
    image.save(png, format="PNG")
    return write_atomic(path, png.getvalue())  # a reader never sees half a PNG
