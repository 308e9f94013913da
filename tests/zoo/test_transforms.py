"""One resize-and-crop for images and masks; the normalisation and its ZBox bounds; the seeded selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from xaiopt.errors import ConfigError
from xaiopt.zoo.selection import select_balanced
from xaiopt.zoo.transforms import IMAGENET_MEAN, IMAGENET_STD, Normalization, ResizeCrop


def test_image_and_mask_stay_aligned() -> None:
    # a white 40x20 block on black in a 100x80 image, and its mask: after 100x80 -> 50x40 -> crop
    # 40x40 the block is columns 5..24, rows 5..14 in both (the image up to the blur of its edge)
    pixels = np.zeros((80, 100, 3), np.uint8)
    pixels[10:30, 20:60] = 255
    transform = ResizeCrop(40)
    image = transform.image(Image.fromarray(pixels))
    mask = transform.mask(pixels[..., 0] > 0)
    assert image.shape == (3, 40, 40) and mask.shape == (1, 40, 40) and mask.dtype == torch.bool
    expected = torch.zeros(40, 40, dtype=torch.bool)
    expected[5:15, 5:25] = True
    assert torch.equal(mask[0], expected)
    assert torch.equal(image[0] > 0.5, expected)
    # a mask given as a PIL image (any nonzero pixel is object) takes the same path
    assert torch.equal(transform.mask(Image.fromarray(pixels[..., 0] // 255 * 7)), mask)


def test_portrait_images_crop_rows() -> None:
    mask = np.zeros((60, 30), bool)
    mask[0:15] = True                                   # the top quarter: cut away by the centre crop
    assert not ResizeCrop(30).mask(mask).any()
    assert ResizeCrop(30).mask(~mask).all()


def test_normalisation_and_bounds() -> None:
    norm = Normalization()
    assert norm.mean == IMAGENET_MEAN and norm.std == IMAGENET_STD
    low, high = norm.bounds()
    x = torch.stack([torch.zeros(3, 2, 2), torch.ones(3, 2, 2)])
    y = norm(x)
    assert torch.allclose(y[0, :, 0, 0], low) and torch.allclose(y[1, :, 0, 0], high)
    half = Normalization((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert torch.equal(half.bounds()[0], -torch.ones(3)) and torch.equal(half.bounds()[1], torch.ones(3))


def test_selection_refuses_and_replaces_within_the_class() -> None:
    groups = {0: ["a0", "a1", "a2"], 3: ["b0", "b1"]}
    picked = select_balanced(groups, n=4, seed=0, label="t", accept=lambda item, cls: None if item == "a1" else item)
    classes = [cls for _, cls, _ in picked]
    assert classes == [0, 3, 0, 3] and "a1" not in [item for item, _, _ in picked]
    assert [v for _, _, v in picked] == [item for item, _, _ in picked]
    with pytest.raises(ConfigError, match="n=6 is invalid; valid: 1 to 5"):
        select_balanced(groups, n=6, seed=0, label="t")
