"""Evaluation data from an ImageFolder-style directory, with optional object masks.

Layout: ``<path>/<class_name>/<...>/<image>``. The class sub-folders name classes of the model;
:func:`xaiopt.zoo.classes.folder_class_map` turns them into indices: ``data.classes`` when given,
integer folder names as indices, ImageNet wnids (``n01440764``) as ILSVRC-2012 indices, otherwise
the sorted folder names as 0..K-1. Images are resized (shorter side) and centre-cropped to
``image_size`` (:mod:`xaiopt.zoo.transforms`) and normalised (ImageNet mean and std by default).

Masks are optional. They are looked up in ``<path>_masks/`` and then in a sibling ``masks/``
folder (``<path>/../masks/``), under the same relative file name with a ``.png`` suffix; any
nonzero pixel is object. They get the same resize and crop (nearest neighbour). When a masks
folder exists every selected image must have its mask.

The ``n`` samples are picked deterministically from ``seed`` (:mod:`xaiopt.zoo.selection`): files
are shuffled within each class and the classes are interleaved, so the selection is as balanced
as the folder allows; ``n_classes`` draws a seeded subset of the classes first.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from xaiopt.errors import ConfigError
from xaiopt.zoo.classes import folder_class_map
from xaiopt.zoo.evaldata import EvalData
from xaiopt.zoo.selection import select_balanced
from xaiopt.zoo.transforms import IMAGENET_MEAN as _MEAN
from xaiopt.zoo.transforms import IMAGENET_STD as _STD
from xaiopt.zoo.transforms import Normalization, ResizeCrop, open_image

IMAGENET_MEAN = torch.tensor(_MEAN)
IMAGENET_STD = torch.tensor(_STD)
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"})


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted."""
    return sorted(f for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)


def load_imagefolder(
    path: str | Path,
    *,
    n: int,
    seed: int = 0,
    image_size: int = 224,
    classes: Sequence[str] | str | None = None,
    n_classes: int | None = None,
    normalization: Normalization = Normalization(),
) -> EvalData:
    """Load ``n`` samples of an ImageFolder-style directory; see the module docstring.

    Example:
        >>> data = load_imagefolder("photos", n=8, image_size=224)  # photos/n01440764/*.JPEG ...
        >>> data.num_classes, data.y[:2].tolist()                   # doctest: +SKIP
        (1000, [0, 0])
    """
    label = f"imagefolder:{path}"
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ConfigError(
            f"dataset {label!r}: {str(root)!r} is not a directory; expected a folder with one sub-folder per class"
        )
    folders = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files = {folder: list_images(root / folder) for folder in folders}
    if sum(len(f) for f in files.values()) == 0:
        raise ConfigError(
            f"dataset {label!r}: no images found; expected <path>/<class>/<image> with one of "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))}"
        )
    cmap = folder_class_map(folders, classes, label=label)
    groups = {cmap.index[f]: files[f] for f in folders if files[f]}
    selected = select_balanced(groups, n=n, seed=seed, n_classes=n_classes, label=label)
    transform = ResizeCrop(image_size)
    mask_root = _find_mask_root(root)
    images, labels, masks = [], [], []
    for file, cls, _ in selected:
        image = open_image(file, "RGB", label)
        images.append(transform.image(image))
        labels.append(cls)
        if mask_root is not None:
            mask_file = mask_root / file.relative_to(root).with_suffix(".png")
            if not mask_file.is_file():
                raise ConfigError(
                    f"dataset {label!r}: mask {str(mask_file)!r} is missing; "
                    f"every image needs a mask in {str(mask_root)!r}"
                )
            mask = open_image(mask_file, "L", label)
            if mask.size != image.size:
                raise ConfigError(
                    f"dataset {label!r}: mask {str(mask_file)!r} is {mask.size[0]}x{mask.size[1]}, "
                    f"its image is {image.size[0]}x{image.size[1]}; they must match"
                )
            masks.append(transform.mask(mask))

    low, high = normalization.bounds()
    return EvalData(
        x=normalization(torch.stack(images)),
        y=torch.tensor(labels, dtype=torch.int64),
        masks=torch.stack(masks) if mask_root is not None else None,
        low=low,
        high=high,
        num_classes=cmap.num_classes,
        class_names=cmap.names,
    )


def _find_mask_root(root: Path) -> Path | None:
    candidates = [root.with_name(root.name + "_masks"), root.parent / "masks"]
    for candidate in candidates:
        if candidate.is_dir() and candidate.resolve() != root.resolve():
            return candidate
    return None
