"""MS COCO 2017 with instance masks: ``coco:<path>``, read from the annotation JSON (no pycocotools).

``<path>`` holds ``annotations/instances_<split>2017.json`` and the images in ``<split>2017/``
(``split``: ``val``, the default, or ``train``), as the COCO download unpacks; nothing is
downloaded.

The target of an image is the category whose annotations cover the largest total ``area`` (ties:
the lower category id). Its mask is the union of that category's instance masks: polygons are
filled with PIL (boundary pixels included), run-length masks (``iscrowd: 1``, a crowd of the
category; uncompressed ``counts`` lists and COCO's compressed strings alike) decoded in COCO's
column-major order. A crowd region counts for its category's area and mask like an instance: its
pixels are that category's. Images without annotations are skipped. Classes are the file's
categories in id order (``person`` = 0 ... ``toothbrush`` = 79 for the 80 of COCO 2017) unless
``data.classes`` maps the category names to the model's indices. Masks take the images' resize
and centre crop; an image whose target pixels all fall outside the crop is skipped for the next
image of its class.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from xaiopt.errors import ConfigError
from xaiopt.zoo.classes import dataset_class_map
from xaiopt.zoo.evaldata import EvalData
from xaiopt.zoo.selection import masked_batch, select_balanced
from xaiopt.zoo.transforms import Normalization, ResizeCrop, open_image

SPLITS = ("val", "train")


def load_coco(
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
    """Load ``n`` images with the mask of their largest category; see the module docstring.

    Example:
        >>> data = load_coco("/data/coco", n=40)     # /data/coco/annotations/instances_val2017.json
        >>> data.class_names[:2], data.masks.dtype  # doctest: +SKIP
        (('person', 'bicycle'), torch.bool)
    """
    label = f"coco:{path}"
    split = split or "val"
    if split not in SPLITS:
        raise ConfigError(f"data.split={split!r} is invalid for dataset {label!r}; valid: {', '.join(SPLITS)}")
    root = Path(path).expanduser()
    ann_file = root / "annotations" / f"instances_{split}2017.json"
    images_dir = root / f"{split}2017"
    if not ann_file.is_file():
        raise ConfigError(f"dataset {label!r}: {str(ann_file)!r} is missing; valid: the folder that holds "
                          f"annotations/instances_{split}2017.json and {split}2017/")
    try:
        doc = json.loads(ann_file.read_text())
        categories = sorted(doc["categories"], key=lambda c: c["id"])
        names = {int(c["id"]): str(c["name"]) for c in categories}
        images = {int(im["id"]): im for im in doc["images"]}
        annotations = doc["annotations"]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"dataset {label!r}: {str(ann_file)!r} is not a COCO instances file "
                          f"({type(err).__name__}: {err}); valid: the JSON with images, annotations, categories") \
            from None
    ordered = tuple(names[i] for i in sorted(names))
    cmap = dataset_class_map(classes, ordered, label=label, kind="COCO categories")
    by_image: dict[int, list[dict[str, Any]]] = {}
    for a in annotations:
        if int(a["image_id"]) not in images:
            raise ConfigError(f"dataset {label!r}: annotation {a.get('id')} names image {a['image_id']}, which "
                              f"{ann_file.name} does not list")
        if int(a["category_id"]) not in names:
            raise ConfigError(f"dataset {label!r}: annotation {a.get('id')} has category {a['category_id']}, "
                              f"which {ann_file.name} does not list")
        by_image.setdefault(int(a["image_id"]), []).append(a)
    groups: dict[int, list[tuple[int, int]]] = {}
    for image_id in sorted(by_image):
        category = largest_category(by_image[image_id])
        cls = cmap.lookup(names[category], label=label, what="COCO category")
        groups.setdefault(cls, []).append((image_id, category))
    if not groups:
        raise ConfigError(f"dataset {label!r}: {ann_file.name} has no annotated image")

    transform = ResizeCrop(image_size)

    def load(item: tuple[int, int], cls: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        image_id, category = item
        info = images[image_id]
        file = images_dir / str(info["file_name"])
        if not file.is_file():
            raise ConfigError(f"dataset {label!r}: image {str(file)!r} (id {image_id}) is missing")
        image = open_image(file, "RGB", label)
        height, width = int(info.get("height", image.height)), int(info.get("width", image.width))
        if (image.height, image.width) != (height, width):
            raise ConfigError(f"dataset {label!r}: image {str(file)!r} is {image.width}x{image.height}, its "
                              f"annotation says {width}x{height}")
        union = np.zeros((height, width), dtype=bool)
        for a in by_image[image_id]:
            if int(a["category_id"]) == category:
                union |= annotation_mask(a, height, width, label=label)
        mask = transform.mask(union)
        return (transform.image(image), mask) if bool(mask.any()) else None

    selected = select_balanced(groups, n=n, seed=seed, n_classes=n_classes, label=label, accept=load)
    return masked_batch(selected, cmap, normalization)


def largest_category(annotations: list[dict[str, Any]]) -> int:
    """The category id of the largest total ``area`` among ``annotations`` (ties: the lower id)."""
    area: dict[int, float] = {}
    for a in annotations:
        area[int(a["category_id"])] = area.get(int(a["category_id"]), 0.0) + float(a.get("area", 0.0))
    return min(area, key=lambda c: (-area[c], c))


def annotation_mask(annotation: dict[str, Any], height: int, width: int, *, label: str = "coco") -> np.ndarray:
    """The (height, width) boolean mask of one COCO annotation: polygons or run-length encoding."""
    seg = annotation["segmentation"]
    if isinstance(seg, list):  # polygons [[x1, y1, x2, y2, ...], ...]
        canvas = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(canvas)
        for polygon in seg:
            if len(polygon) >= 6:
                draw.polygon([(float(polygon[i]), float(polygon[i + 1])) for i in range(0, len(polygon) - 1, 2)],
                             fill=1, outline=1)
        return np.asarray(canvas, dtype=bool)
    h, w = (int(v) for v in seg["size"])
    counts = seg["counts"]
    runs = rle_counts(counts) if isinstance(counts, str) else [int(c) for c in counts]
    flat = np.zeros(h * w, dtype=bool)
    position, value = 0, False
    for run in runs:
        if value:
            flat[position:position + run] = True
        position += run
        value = not value
    mask = flat.reshape(w, h).T  # column-major, as COCO stores it
    if (h, w) != (height, width):
        raise ConfigError(f"dataset {label!r}: the run-length mask of annotation {annotation.get('id')} is {w}x{h}, "
                          f"its image {width}x{height}")
    return mask


def rle_counts(text: str) -> list[int]:
    """COCO's compressed run-length string as its list of run lengths.

    Each count is stored in 5-bit groups, least significant first, each byte ``48 + group`` with bit
    0x20 set while more groups follow and bit 0x10 of the last group the sign; from the fourth count
    on, a count is stored as its difference to the count two places before (``"X13en0"`` is
    ``[40, 3, 981]``).
    """
    counts: list[int] = []
    p = 0
    while p < len(text):
        x, k, more = 0, 0, True
        while more:
            c = ord(text[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts
