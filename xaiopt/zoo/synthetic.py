"""The embedded synthetic benchmark: shapes on texture, with the pixel mask of what decides the class.

Every image is 3x64x64 and shows exactly one *class object*, one of four filled shapes:
``circle``, ``square``, ``triangle`` or ``plus``. The object has a random position, size,
rotation (up to about 20 degrees) and a flat random colour; its boolean pixel mask is returned
with the image, so localization metrics can check where an explanation puts its relevance.

The class object sits on a textured, noisy background (smooth low-frequency colour noise plus
per-pixel noise) and is accompanied by one or two *distractors*: thin rings and thin line
segments, as bright and colourful as the object but never one of the class shapes, so they carry
no information about the label. The object is drawn last, so its mask is fully visible.

Pixels are produced in ``[0, 1]`` and normalised per channel with :data:`MEAN` and :data:`STD`;
:func:`input_bounds` gives the lowest and highest value a pixel can take in that normalised input
space (what LRP's ``zbox`` rule needs).

Generation is batched in torch (coordinate grids, no per-pixel Python loops) and fully
deterministic: sample ``i`` of a split depends only on the split name, the seed and ``i``, so the
first ``n`` samples do not change when more are requested. The ``train`` and ``test`` splits
draw from unrelated random streams, and labels cycle through the classes (sample ``i`` has class
``i % 4``), so the first ``n`` samples of a split are balanced.

Example:
    >>> from xaiopt.zoo.synthetic import generate
    >>> batch = generate(8, seed=0, split="test")
    >>> batch.x.shape, batch.masks.shape, batch.y.tolist()
    (torch.Size([8, 3, 64, 64]), torch.Size([8, 1, 64, 64]), [0, 1, 2, 3, 0, 1, 2, 3])
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch

CLASS_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "plus")
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SIZE = 64
SPLITS: tuple[str, ...] = ("train", "test")

#: Per-channel normalisation of the ``[0, 1]`` pixels into the models' input space.
MEAN = torch.tensor([0.40, 0.40, 0.40])
STD = torch.tensor([0.25, 0.25, 0.25])

#: Bumped whenever the generator changes what it draws (invalidates trained-model caches).
GENERATOR_VERSION = 1

# Samples are generated in chunks with one random stream each, so that sample i depends on
# (split, seed, i) only and not on how many samples were asked for.
_CHUNK = 256


@dataclass(frozen=True)
class SyntheticBatch:
    """Raw benchmark samples before normalisation.

    ``pixels`` (N,3,H,W) in ``[0, 1]``; ``y`` (N,) int64; ``masks`` (N,1,H,W) bool on the class
    object; ``colours`` (N,3) the flat colour of each class object.
    """

    pixels: torch.Tensor
    y: torch.Tensor
    masks: torch.Tensor
    colours: torch.Tensor

    @property
    def x(self) -> torch.Tensor:
        """The pixels normalised into the models' input space."""
        return normalize(self.pixels)


def normalize(pixels: torch.Tensor) -> torch.Tensor:
    """Map ``[0, 1]`` pixels (N,3,H,W) into the models' input space."""
    return (pixels - MEAN.view(1, 3, 1, 1)) / STD.view(1, 3, 1, 1)


def input_bounds() -> tuple[torch.Tensor, torch.Tensor]:
    """``(low, high)``, each (3,) float32: the extreme values a pixel takes in input space."""
    return (0.0 - MEAN) / STD, (1.0 - MEAN) / STD


def generate(n: int, *, seed: int = 0, split: str = "test", start: int = 0) -> SyntheticBatch:
    """Samples ``start .. start+n-1`` of the given split, deterministic in ``(split, seed)``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if n < 0 or start < 0:
        raise ValueError(f"n and start must be >= 0, got n={n}, start={start}")
    first, last = start // _CHUNK, (start + n + _CHUNK - 1) // _CHUNK
    parts = [_generate_chunk(_chunk_seed(split, seed, c)) for c in range(first, max(last, first + 1))]
    lo = start - first * _CHUNK
    pixels, y, masks, colours = (torch.cat(t)[lo : lo + n] for t in zip(*parts))
    return SyntheticBatch(pixels=pixels, y=y, masks=masks, colours=colours)


def _chunk_seed(split: str, seed: int, chunk: int) -> int:
    digest = hashlib.sha256(f"xaiopt-synthetic:{split}:{seed}:{chunk}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _interpolation_matrix(coarse: int, fine: int) -> torch.Tensor:
    """(fine, coarse) weights of piecewise-linear interpolation between coarse grid points."""
    position = (torch.arange(fine, dtype=torch.float32) + 0.5) * coarse / fine - 0.5
    position = position.clamp(0, coarse - 1)
    left = position.floor().clamp(max=coarse - 2)
    frac = (position - left).unsqueeze(1)
    grid = torch.arange(coarse, dtype=torch.float32).unsqueeze(0)
    return (1 - frac) * (grid == left.unsqueeze(1)) + frac * (grid == left.unsqueeze(1) + 1)


def _generate_chunk(chunk_seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    n, size = _CHUNK, IMAGE_SIZE
    g = torch.Generator().manual_seed(chunk_seed)

    def uniform(*shape: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        return low + (high - low) * torch.rand(*shape, generator=g)

    # The label only depends on the position in the chunk (chunks are multiples of the class count).
    y = torch.arange(n, dtype=torch.int64) % NUM_CLASSES
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    yy = coords.view(1, size, 1)
    xx = coords.view(1, 1, size)

    # Background: a dark-to-mid base colour, smooth colour noise and fine pixel noise.
    base = uniform(n, 3, 1, 1, low=0.05, high=0.45)
    # Smooth colour noise: a coarse 6x6 grid, linearly interpolated by two small matmuls.
    spread = _interpolation_matrix(6, size)
    smooth = spread @ uniform(n, 3, 6, 6, low=-0.12, high=0.12) @ spread.T
    pixels = base + smooth + uniform(n, 3, size, size, low=-0.06, high=0.06)

    # Distractors: thin rings and thin line segments (never a filled class shape).
    n_distractors = 1 + (uniform(n) < 0.5).long()
    for k in range(2):
        present = (n_distractors > k).view(n, 1, 1)
        cy, cx = uniform(n, 1, 1, low=8, high=size - 8), uniform(n, 1, 1, low=8, high=size - 8)
        dist = torch.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        radius = uniform(n, 1, 1, low=4, high=10)
        ring = (dist - radius).abs() <= 0.9
        angle = uniform(n, 1, 1, high=math.pi)
        half = uniform(n, 1, 1, low=7, high=15)
        along = (xx - cx) * torch.cos(angle) + (yy - cy) * torch.sin(angle)
        across = -(xx - cx) * torch.sin(angle) + (yy - cy) * torch.cos(angle)
        line = (along.abs() <= half) & (across.abs() <= 0.8)
        is_ring = uniform(n, 1, 1) < 0.5
        shape = torch.where(is_ring, ring, line) & present
        colour = uniform(n, 3, 1, 1, low=0.5, high=1.0)
        pixels = torch.where(shape.unsqueeze(1), colour, pixels)
    pixels = pixels.clamp(0.0, 1.0)

    # The class object, drawn last so that its mask is all visible.
    radius = uniform(n, 1, 1, low=9, high=17)
    margin = radius + 2
    cy = margin + uniform(n, 1, 1) * (size - 2 * margin)
    cx = margin + uniform(n, 1, 1) * (size - 2 * margin)
    angle = uniform(n, 1, 1, low=-0.35, high=0.35)
    u = (xx - cx) * torch.cos(angle) + (yy - cy) * torch.sin(angle)
    v = -(xx - cx) * torch.sin(angle) + (yy - cy) * torch.cos(angle)
    masks_by_class = torch.stack(
        [
            u**2 + v**2 <= radius**2,  # circle
            torch.maximum(u.abs(), v.abs()) <= 0.8 * radius,  # square
            (v <= 0.5 * radius) & (math.sqrt(3.0) * u.abs() - v <= radius),  # triangle, apex up
            ((u.abs() <= 0.3 * radius) & (v.abs() <= radius))
            | ((v.abs() <= 0.3 * radius) & (u.abs() <= radius)),  # plus
        ]
    )  # (classes, N, H, W)
    masks = masks_by_class[y, torch.arange(n)].unsqueeze(1)
    colours = uniform(n, 3, low=0.55, high=1.0)
    pixels = torch.where(masks, colours.view(n, 3, 1, 1), pixels)
    return pixels.contiguous(), y, masks.contiguous(), colours
