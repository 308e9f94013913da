"""The one preprocessing every image dataset shares: resize, centre crop, normalise.

An image and its mask always go through the same :class:`ResizeCrop`: the shorter side is resized
to ``size`` (the longer one keeps the aspect ratio, truncated to an integer as torchvision does),
then the centre ``size x size`` square is cut out. Images are resized bilinearly (antialiased),
masks with nearest neighbour, so a mask stays a set of pixels and lines up with its image pixel
for pixel. Anything that is not a pixel mask yet (bounding boxes) is rasterized at the image's
original resolution first and then takes this same path.

:class:`Normalization` maps pixels in [0, 1] to the model's input space and gives the bounds
``low = (0 - mean) / std``, ``high = (1 - mean) / std`` that the ZBox rule needs.

Example:
    >>> import numpy as np
    >>> from xaiopt.zoo.transforms import ResizeCrop
    >>> box = np.zeros((80, 100), dtype=bool); box[10:30, 20:60] = True
    >>> mask = ResizeCrop(40).mask(box)           # 100x80 -> 50x40 -> centre 40x40
    >>> mask.shape, int(mask.sum())
    (torch.Size([1, 40, 40]), 200)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from xaiopt.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ResizeCrop:
    """Resize the shorter side to ``size``, then centre-crop ``size x size``."""

    size: int

    def image(self, image: Image.Image) -> Tensor:
        """An RGB PIL image as a (3, size, size) float tensor in [0, 1]."""
        image = TF.resize(image, [self.size], interpolation=InterpolationMode.BILINEAR, antialias=True)
        image = TF.center_crop(image, [self.size, self.size])
        return TF.pil_to_tensor(image).float() / 255.0

    def mask(self, mask: np.ndarray | Image.Image) -> Tensor:
        """A boolean (H, W) array, or a PIL image whose nonzero pixels are object, as (1, size, size) bool."""
        if isinstance(mask, np.ndarray):
            mask = Image.fromarray(mask.astype(np.uint8) * 255)  # uint8 (H, W): mode L
        elif mask.mode != "L":
            mask = mask.convert("L")
        mask = TF.resize(mask, [self.size], interpolation=InterpolationMode.NEAREST)
        mask = TF.center_crop(mask, [self.size, self.size])
        return TF.pil_to_tensor(mask) > 0


@dataclass(frozen=True)
class Normalization:
    """Per-channel ``(x - mean) / std``; ImageNet's statistics by default."""

    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __call__(self, x: Tensor) -> Tensor:
        """(N, C, H, W) pixels in [0, 1] to the model's input space."""
        mean, std = torch.tensor(self.mean), torch.tensor(self.std)
        return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)

    def bounds(self) -> tuple[Tensor, Tensor]:
        """``(low, high)``, each (C,) float32: the normalised values of pixels 0 and 1."""
        mean, std = torch.tensor(self.mean), torch.tensor(self.std)
        return (0.0 - mean) / std, (1.0 - mean) / std


def open_image(file: str | Path, mode: str | None, label: str) -> Image.Image:
    """Open ``file`` converted to ``mode`` (None: as stored); an unreadable file is one :class:`ConfigError` line."""
    try:
        with Image.open(file) as image:
            return image.convert(mode) if mode is not None else image.copy()
    except Image.DecompressionBombError as error:
        # PIL refuses to decode more than twice Image.MAX_IMAGE_PIXELS; its message gives the count
        found = re.search(r"\((\d+) pixels\)", str(error))
        size = f"{int(found[1]):,} pixels" if found else "too many pixels"
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise ConfigError(f"dataset {label!r}: {str(file)!r} has {size}, which PIL refuses to decode as a possible "
                          f"decompression bomb; valid: images of at most {limit:,} pixels (shrink it or take it "
                          f"out of the dataset)") from None
    except OSError as error:
        raise ConfigError(f"dataset {label!r}: cannot read {str(file)!r} as an image ({error})") from None
