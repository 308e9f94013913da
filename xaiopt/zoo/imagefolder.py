"""Evaluation data from an ImageFolder-style directory, with optional object masks.

Layout: ``<path>/<class_name>/<...>/<image>``; classes are the sub-folders, sorted by name. Images
are resized (shorter side) and centre-cropped to ``image_size`` and normalised with the ImageNet
mean and std.

Masks are optional. They are looked up in ``<path>_masks/`` and then in a sibling ``masks/``
folder (``<path>/../masks/``), under the same relative file name with a ``.png`` suffix; any
nonzero pixel is object. They get the same resize and crop (nearest neighbour). When a masks
folder exists every selected image must have its mask.

The ``n`` samples are picked deterministically from ``seed``: files are shuffled within each class
and the classes are interleaved, so the selection is as balanced as the folder allows.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from xaiopt.errors import ConfigError
from xaiopt.zoo.evaldata import EvalData

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406])
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225])
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"})


def load_imagefolder(path: str | Path, *, n: int, seed: int = 0, image_size: int = 224) -> EvalData:
    """Load ``n`` samples of an ImageFolder-style directory; see the module docstring."""
    label = f"imagefolder:{path}"
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ConfigError(
            f"dataset {label!r}: {str(root)!r} is not a directory; expected a folder with one sub-folder per class"
        )
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files_by_class = [
        sorted(f for f in (root / c).rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        for c in classes
    ]
    total = sum(len(files) for files in files_by_class)
    if total == 0:
        raise ConfigError(
            f"dataset {label!r}: no images found; expected <path>/<class>/<image> with one of "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))}"
        )
    if n < 1 or n > total:
        raise ConfigError(f"dataset {label!r}: n={n} is invalid; valid: 1 to {total} (the images in the folder)")

    selected = _select_balanced(files_by_class, n=n, seed=seed)
    mask_root = _find_mask_root(root)
    images, labels, masks = [], [], []
    for file, cls in selected:
        image, original_size = _load_image(file, image_size, label)
        images.append(image)
        labels.append(cls)
        if mask_root is not None:
            mask_file = mask_root / file.relative_to(root).with_suffix(".png")
            if not mask_file.is_file():
                raise ConfigError(
                    f"dataset {label!r}: mask {str(mask_file)!r} is missing; "
                    f"every image needs a mask in {str(mask_root)!r}"
                )
            masks.append(_load_mask(mask_file, image_size, label, original_size))

    low, high = (0.0 - IMAGENET_MEAN) / IMAGENET_STD, (1.0 - IMAGENET_MEAN) / IMAGENET_STD
    x = (torch.stack(images) - IMAGENET_MEAN.view(1, 3, 1, 1)) / IMAGENET_STD.view(1, 3, 1, 1)
    return EvalData(
        x=x,
        y=torch.tensor(labels, dtype=torch.int64),
        masks=torch.stack(masks) if mask_root is not None else None,
        low=low,
        high=high,
        num_classes=len(classes),
        class_names=tuple(classes),
    )


def _select_balanced(files_by_class: list[list[Path]], *, n: int, seed: int) -> list[tuple[Path, int]]:
    generator = torch.Generator().manual_seed(seed)
    shuffled = [
        [files[i] for i in torch.randperm(len(files), generator=generator).tolist()] for files in files_by_class
    ]
    selected: list[tuple[Path, int]] = []
    rank = 0
    while len(selected) < n:
        for cls, files in enumerate(shuffled):
            if rank < len(files) and len(selected) < n:
                selected.append((files[rank], cls))
        rank += 1
    return selected


def _find_mask_root(root: Path) -> Path | None:
    candidates = [root.with_name(root.name + "_masks"), root.parent / "masks"]
    for candidate in candidates:
        if candidate.is_dir() and candidate.resolve() != root.resolve():
            return candidate
    return None


def _open(file: Path, mode: str, label: str) -> Image.Image:
    try:
        with Image.open(file) as image:
            return image.convert(mode)
    except OSError as error:
        raise ConfigError(f"dataset {label!r}: cannot read {str(file)!r} as an image ({error})") from None


def _load_image(file: Path, image_size: int, label: str) -> tuple[torch.Tensor, tuple[int, int]]:
    image = _open(file, "RGB", label)
    original_size = image.size
    image = TF.resize(image, [image_size], interpolation=InterpolationMode.BILINEAR, antialias=True)
    image = TF.center_crop(image, [image_size, image_size])
    return TF.pil_to_tensor(image).float() / 255.0, original_size


def _load_mask(file: Path, image_size: int, label: str, image_original_size: tuple[int, int]) -> torch.Tensor:
    mask = _open(file, "L", label)
    if mask.size != image_original_size:
        raise ConfigError(
            f"dataset {label!r}: mask {str(file)!r} is {mask.size[0]}x{mask.size[1]}, "
            f"its image is {image_original_size[0]}x{image_original_size[1]}; they must match"
        )
    mask = TF.resize(mask, [image_size], interpolation=InterpolationMode.NEAREST)
    mask = TF.center_crop(mask, [image_size, image_size])
    return TF.pil_to_tensor(mask) > 0
