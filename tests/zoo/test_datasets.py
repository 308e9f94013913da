from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xaiopt.errors import ConfigError, UnknownNameError
from xaiopt.zoo import EvalData, load_dataset
from xaiopt.zoo.imagefolder import IMAGENET_MEAN, IMAGENET_STD


def test_benchmark_dataset_follows_the_contract() -> None:
    data = load_dataset("benchmark", n=32, seed=0)
    assert isinstance(data, EvalData) and len(data) == 32
    assert data.x.shape == (32, 3, 64, 64) and data.x.dtype == torch.float32
    assert data.y.shape == (32,) and data.y.dtype == torch.int64
    assert data.masks is not None and data.masks.shape == (32, 1, 64, 64) and data.masks.dtype == torch.bool
    assert data.masks.flatten(1).any(dim=1).all()
    assert data.low.shape == data.high.shape == (3,) and data.low.dtype == torch.float32
    assert (data.x >= data.low.view(1, 3, 1, 1)).all() and (data.x <= data.high.view(1, 3, 1, 1)).all()
    assert data.num_classes == 4 and data.class_names == ("circle", "square", "triangle", "plus")
    assert data.y.bincount().tolist() == [8, 8, 8, 8]
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.n = 3  # type: ignore[misc]


def test_benchmark_dataset_is_deterministic_and_prefix_stable() -> None:
    a = load_dataset("benchmark", n=40, seed=2)
    b = load_dataset("benchmark", n=8, seed=2)
    assert torch.equal(a.x[:8], b.x) and torch.equal(a.masks[:8], b.masks)
    assert not torch.equal(b.x, load_dataset("benchmark", n=8, seed=3).x)
    assert not torch.equal(b.x, load_dataset("benchmark", n=8, seed=2, split="train").x)


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"name": "cifar10", "n": 4}, UnknownNameError, "benchmark, imagefolder:<path>"),
        ({"name": "imagefolder:", "n": 4}, UnknownNameError, "imagefolder:<path>"),
        ({"name": "benchmark", "n": 0}, ConfigError, "n=0"),
        ({"name": "benchmark", "n": 4, "split": "val"}, ConfigError, "train, test"),
        ({"name": "benchmark", "n": 4, "image_size": 224}, ConfigError, "image_size=224"),
        ({"name": "imagefolder:/no/such/folder", "n": 4}, ConfigError, "/no/such/folder"),
    ],
)
def test_bad_dataset_requests_raise_one_clear_line(kwargs: dict, error: type[Exception], fragment: str) -> None:
    name = kwargs.pop("name")
    with pytest.raises(error) as info:
        load_dataset(name, **kwargs)
    assert "\n" not in str(info.value) and fragment in str(info.value)


def _write_folder(root: Path, *, size: tuple[int, int], masks_dir: Path | None) -> None:
    """Two classes x three images: a white rectangle on black; the mask is that rectangle."""
    width, height = size
    for c, cls in enumerate(["cat", "dog"]):
        for i in range(3):
            pixels = np.zeros((height, width, 3), dtype=np.uint8)
            mask = np.zeros((height, width), dtype=np.uint8)
            top, left = height // 2 - 5 + i, width // 2 - 6 + 2 * c  # near the centre: survives a centre crop
            pixels[top : top + 8, left : left + 10] = 255
            mask[top : top + 8, left : left + 10] = 1  # any nonzero value is object
            (root / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / cls / f"img{i}.jpg" if i == 2 else root / cls / f"img{i}.png")
            if masks_dir is not None:
                (masks_dir / cls).mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask).save(masks_dir / cls / f"img{i}.png")


def test_imagefolder_without_masks(tmp_path: Path) -> None:
    root = tmp_path / "images"
    _write_folder(root, size=(48, 32), masks_dir=None)
    data = load_dataset(f"imagefolder:{root}", n=5, seed=0, image_size=24)
    assert data.x.shape == (5, 3, 24, 24) and data.masks is None
    assert data.class_names == ("cat", "dog") and data.num_classes == 2
    assert data.y.tolist() == [0, 1, 0, 1, 0]  # classes interleaved: balanced
    assert torch.allclose(data.low, -IMAGENET_MEAN / IMAGENET_STD)
    assert torch.allclose(data.high, (1 - IMAGENET_MEAN) / IMAGENET_STD)
    assert (data.x >= data.low.view(1, 3, 1, 1) - 1e-5).all() and (data.x <= data.high.view(1, 3, 1, 1) + 1e-5).all()
    again = load_dataset(f"imagefolder:{root}", n=5, seed=0, image_size=24)
    assert torch.equal(data.x, again.x)


def test_imagefolder_default_size_is_224(tmp_path: Path) -> None:
    root = tmp_path / "images"
    _write_folder(root, size=(40, 30), masks_dir=None)
    assert load_dataset(f"imagefolder:{root}", n=2).x.shape == (2, 3, 224, 224)


@pytest.mark.parametrize("layout", ["suffix", "sibling"])
def test_imagefolder_with_masks(tmp_path: Path, layout: str) -> None:
    root = tmp_path / "images"
    masks_dir = tmp_path / ("images_masks" if layout == "suffix" else "masks")
    _write_folder(root, size=(32, 32), masks_dir=masks_dir)
    data = load_dataset(f"imagefolder:{root}", n=6, seed=1, image_size=32)
    assert data.masks is not None and data.masks.shape == (6, 1, 32, 32) and data.masks.dtype == torch.bool
    assert (data.masks.sum(dim=(1, 2, 3)) == 80).all()  # the 8x10 rectangles
    # No resize at image_size=32: images are white on the mask and black elsewhere, exactly for
    # the four PNGs, up to JPEG ringing for the two JPEGs.
    white, black = data.high.view(1, 3, 1, 1), data.low.view(1, 3, 1, 1)
    mask = data.masks.expand_as(data.x)
    assert torch.allclose(data.x[mask], white.expand_as(data.x)[mask], atol=0.6)
    assert torch.allclose(data.x[~mask], black.expand_as(data.x)[~mask], atol=0.6)
    exact = ((data.x == white).all(dim=1, keepdim=True) == data.masks).flatten(1).all(dim=1)
    assert exact.sum() >= 4


def test_imagefolder_masks_follow_resize_and_crop(tmp_path: Path) -> None:
    root = tmp_path / "images"
    _write_folder(root, size=(64, 32), masks_dir=tmp_path / "images_masks")
    data = load_dataset(f"imagefolder:{root}", n=6, image_size=16)
    # 64x32 -> 32x16 -> centre crop 16x16; the 8x10 rectangles become about 4x5.
    assert data.masks.shape == (6, 1, 16, 16)
    assert ((data.masks.sum(dim=(1, 2, 3)) >= 12) & (data.masks.sum(dim=(1, 2, 3)) <= 30)).all()


def test_imagefolder_errors(tmp_path: Path) -> None:
    root = tmp_path / "images"
    _write_folder(root, size=(32, 32), masks_dir=tmp_path / "images_masks")
    with pytest.raises(ConfigError, match=r"n=7 is invalid; valid: 1 to 6"):
        load_dataset(f"imagefolder:{root}", n=7)
    (tmp_path / "images_masks" / "dog" / "img1.png").unlink()
    with pytest.raises(ConfigError, match="img1.png"):
        load_dataset(f"imagefolder:{root}", n=6, image_size=32)
    empty = tmp_path / "empty"
    (empty / "cls").mkdir(parents=True)
    with pytest.raises(ConfigError, match="no images found"):
        load_dataset(f"imagefolder:{empty}", n=1)
    broken = tmp_path / "broken"
    (broken / "cls").mkdir(parents=True)
    (broken / "cls" / "a.png").write_bytes(b"not an image")
    with pytest.raises(ConfigError, match="cannot read"):
        load_dataset(f"imagefolder:{broken}", n=1)
