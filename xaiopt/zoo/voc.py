"""Pascal VOC 2012 segmentation: ``voc:<path>``, through ``torchvision.datasets.VOCSegmentation``.

``<path>`` is the folder that holds ``VOCdevkit/`` (or ``VOCdevkit/`` or ``VOCdevkit/VOC2012/``
itself); nothing is downloaded. ``split`` is the image set (``train``, ``val`` (default) or
``trainval``), read from ``ImageSets/Segmentation/<split>.txt``.

The target of an image is its object class with the most pixels in ``SegmentationClass`` (ties: the
lower class index); 0 (background) and 255 (the void boundary band) are not object. The mask is
the pixels of that class. Classes are the 20 VOC classes in the devkit's order (``aeroplane`` = 0
... ``tvmonitor`` = 19) unless ``data.classes`` maps the VOC names to the model's indices. Masks
take the images' resize and centre crop; an image whose target pixels all fall outside the crop
is skipped for the next image of its class.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from xaiopt.errors import ConfigError
from xaiopt.zoo.classes import dataset_class_map
from xaiopt.zoo.evaldata import EvalData
from xaiopt.zoo.selection import masked_batch, select_balanced
from xaiopt.zoo.transforms import Normalization, ResizeCrop, open_image

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
SPLITS = ("train", "val", "trainval")
VOID = 255


def load_voc(
    path: str | Path,
    *,
    n: int,
    seed: int = 0,
    image_size: int = 224,
    split: str | None = None,
    classes: Sequence[str] | str | None = None,
    n_classes: int | None = None,
    normalization: Normalization = Normalization(),
) -> EvalData:
    """Load ``n`` segmentation images with the mask of their largest class; see the module docstring.

    Example:
        >>> data = load_voc("/data/voc", n=40, split="val")   # /data/voc/VOCdevkit/VOC2012/...
        >>> data.class_names[:2], data.masks.dtype           # doctest: +SKIP
        (('aeroplane', 'bicycle'), torch.bool)
    """
    from torchvision.datasets import VOCSegmentation

    label = f"voc:{path}"
    split = split or "val"
    if split not in SPLITS:
        raise ConfigError(f"data.split={split!r} is invalid for dataset {label!r}; valid: {', '.join(SPLITS)}")
    root = _devkit_parent(Path(path).expanduser(), label)
    split_file = root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not split_file.is_file():
        raise ConfigError(f"dataset {label!r}: {str(split_file)!r} is missing; valid splits are the image sets "
                          f"listed there ({', '.join(SPLITS)})")
    dataset = VOCSegmentation(str(root), year="2012", image_set=split, download=False)
    cmap = dataset_class_map(classes, VOC_CLASSES, label=label, kind="VOC classes")
    groups: dict[int, list[tuple[int, int]]] = {}
    for i, target_file in enumerate(dataset.masks):
        if not Path(target_file).is_file():
            raise ConfigError(f"dataset {label!r}: segmentation {target_file!r} of {split_file.name} is missing; "
                              f"every listed image needs its SegmentationClass PNG")
        segmentation = np.asarray(open_image(target_file, None, label))
        if segmentation.ndim != 2:
            raise ConfigError(f"dataset {label!r}: {target_file!r} is not a class-index PNG (palette or grey "
                              f"levels 0-20 and 255), it has {segmentation.shape[-1]} colour channels")
        voc_label = largest_class(segmentation)
        if voc_label is None:
            continue
        cls = cmap.lookup(VOC_CLASSES[voc_label - 1], label=label, what="VOC class")
        groups.setdefault(cls, []).append((i, voc_label))
    if not groups:
        raise ConfigError(f"dataset {label!r}: no image of {split_file.name} has object pixels (labels 1-20)")

    transform = ResizeCrop(image_size)

    def load(item: tuple[int, int], cls: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        index, voc_label = item
        if not Path(dataset.images[index]).is_file():
            raise ConfigError(f"dataset {label!r}: image {dataset.images[index]!r} is missing")
        image, target = dataset[index]
        mask = transform.mask(np.asarray(target) == voc_label)
        return (transform.image(image.convert("RGB")), mask) if bool(mask.any()) else None

    selected = select_balanced(groups, n=n, seed=seed, n_classes=n_classes, label=label, accept=load)
    return masked_batch(selected, cmap, normalization)


def largest_class(segmentation: np.ndarray) -> int | None:
    """The VOC label (1..20) with the most pixels, the lower one on ties; None without object pixels."""
    counts = np.bincount(segmentation.ravel(), minlength=256)[1:len(VOC_CLASSES) + 1]
    return int(counts.argmax()) + 1 if counts.any() else None


def _devkit_parent(path: Path, label: str) -> Path:
    candidates = [path]
    if path.name == "VOCdevkit":
        candidates.append(path.parent)
    if path.name == "VOC2012" and path.parent.name == "VOCdevkit":
        candidates.append(path.parent.parent)
    for root in candidates:
        if (root / "VOCdevkit" / "VOC2012").is_dir():
            return root
    raise ConfigError(f"dataset {label!r}: no VOCdevkit/VOC2012 under {str(path)!r}; valid: the folder that holds "
                      f"VOCdevkit/VOC2012/{{JPEGImages,SegmentationClass,ImageSets/Segmentation}}")
