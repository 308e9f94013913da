"""ILSVRC-2012 validation images with their bounding boxes: ``imagenet:<path>``.

Layouts (the first that matches ``<path>``):

- Kaggle: ``<path>/ILSVRC/Data/CLS-LOC/val/*.JPEG`` with ``<path>/ILSVRC/Annotations/CLS-LOC/val/*.xml``
  (``<path>`` may also be the ``ILSVRC`` folder itself).
- Side by side: ``<path>/**/*.JPEG`` and ``<path>/**/*.xml`` (matched by file stem).
- A sibling annotation folder: ``<path>/../{bbox,bboxes,Annotations}/`` or the same with a
  ``<name of path>/`` sub-folder (``val/`` next to ``bbox/val/``, as ``ILSVRC2012_bbox_val_v3.tgz``
  unpacks).

Images may sit flat or in per-class sub-folders; each image ``<stem>.<ext>`` needs ``<stem>.xml``
(PASCAL VOC-style: ``<annotation><size><width/><height/></size><object><name>n01440764</name>
<bndbox><xmin/><ymin/><xmax/><ymax/></bndbox></object>...``). The label is the wnid of the first
object (an ILSVRC validation image has objects of its one class only) mapped to the ILSVRC-2012
index (or through ``data.classes``). The mask is the union of that class's boxes.

Box convention (PASCAL VOC, which ILSVRC follows): 1-based pixel indices, both ends inclusive, so
``xmin=1, xmax=width`` covers every column; values are clamped to the image. Boxes are rasterized
at the XML's ``<size>`` (the original resolution; if the image file is smaller or larger, e.g. a
resized copy, the raster is scaled to it with nearest neighbour) and then take the images' resize
and centre crop (:mod:`xaiopt.zoo.transforms`). An image whose boxes fall entirely outside the
crop is skipped for the next image of its class.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from xaiopt.errors import ConfigError
from xaiopt.zoo.classes import explicit_class_map, imagenet_class_map
from xaiopt.zoo.evaldata import EvalData
from xaiopt.zoo.imagefolder import list_images
from xaiopt.zoo.selection import masked_batch, select_balanced
from xaiopt.zoo.transforms import Normalization, ResizeCrop, open_image

_SIBLINGS = ("bbox", "bboxes", "Annotations")
_LAYOUTS = ("<path>/**/*.JPEG beside <stem>.xml; <path>/ILSVRC/Data/CLS-LOC/val with "
            "<path>/ILSVRC/Annotations/CLS-LOC/val (Kaggle); or <path> with a sibling ../bbox, ../bboxes or "
            "../Annotations folder (optionally with a <name of path> sub-folder)")


@dataclass(frozen=True)
class Annotation:
    """One image's XML: its class name, the XML's image size and that class's boxes (1-based, inclusive)."""

    name: str
    size: tuple[int, int] | None  # (width, height)
    boxes: tuple[tuple[int, int, int, int], ...]  # (xmin, ymin, xmax, ymax)


def load_imagenet(
    path: str | Path,
    *,
    n: int,
    seed: int = 0,
    image_size: int = 224,
    classes: Sequence[str] | str | None = None,
    n_classes: int | None = None,
    normalization: Normalization = Normalization(),
) -> EvalData:
    """Load ``n`` validation images with box masks, balanced over classes (a seeded subset with ``n_classes``).

    Example:
        >>> data = load_imagenet("/data/imagenet", n=50, n_classes=50)  # doctest: +SKIP
        >>> data.num_classes, data.masks.shape                            # doctest: +SKIP
        (1000, torch.Size([50, 1, 224, 224]))
    """
    label = f"imagenet:{path}"
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ConfigError(f"dataset {label!r}: {str(root)!r} is not a directory; expected one of: {_LAYOUTS}")
    image_root, xml_root = _layout(root, label)
    images = list_images(image_root)
    if not images:
        raise ConfigError(f"dataset {label!r}: no images found in {str(image_root)!r}; expected one of: {_LAYOUTS}")
    xml_files = {f.stem: f for f in sorted(xml_root.rglob("*.xml"))}
    cmap = explicit_class_map(classes, label=label) if classes is not None else imagenet_class_map()
    groups: dict[int, list[tuple[Path, Annotation]]] = {}
    for image in images:
        xml = xml_files.get(image.stem)
        if xml is None:
            raise ConfigError(f"dataset {label!r}: image {str(image)!r} has no bounding-box XML "
                              f"({image.stem}.xml) in {str(xml_root)!r}; valid: one <image stem>.xml per image")
        note = parse_annotation(xml, label)
        cls = cmap.lookup(note.name, label=label, what=f"{xml.name}: class")
        groups.setdefault(cls, []).append((image, note))

    transform = ResizeCrop(image_size)

    def load(item: tuple[Path, Annotation], cls: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        file, note = item
        image = open_image(file, "RGB", label)
        mask = transform.mask(box_raster(note, image.size))
        return (transform.image(image), mask) if bool(mask.any()) else None

    selected = select_balanced(groups, n=n, seed=seed, n_classes=n_classes, label=label, accept=load)
    return masked_batch(selected, cmap, normalization)


def parse_annotation(file: Path, label: str) -> Annotation:
    """The class and boxes of one PASCAL VOC-style XML (the first object's class, all of its boxes)."""
    try:
        root = ET.parse(file).getroot()
    except (ET.ParseError, OSError) as error:
        raise ConfigError(f"dataset {label!r}: cannot read {str(file)!r} as annotation XML ({error})") from None
    objects = root.findall("object")
    if not objects:
        raise ConfigError(f"dataset {label!r}: {str(file)!r} has no <object>; valid: at least one "
                          f"<object> with <name> and <bndbox>")
    name = (objects[0].findtext("name") or "").strip()
    boxes = []
    for obj in objects:
        if (obj.findtext("name") or "").strip() != name:
            continue
        box = obj.find("bndbox")
        try:
            boxes.append(tuple(int(float(box.findtext(k))) for k in ("xmin", "ymin", "xmax", "ymax")))  # type: ignore[union-attr]
        except (AttributeError, TypeError, ValueError):
            raise ConfigError(f"dataset {label!r}: {str(file)!r}: an <object> of {name!r} lacks a numeric "
                              f"<bndbox> xmin/ymin/xmax/ymax") from None
    width, height = root.findtext("size/width"), root.findtext("size/height")
    try:
        size = (int(width), int(height)) if width and height and int(width) > 0 and int(height) > 0 else None
    except ValueError:
        size = None
    return Annotation(name=name, size=size, boxes=tuple(boxes))  # type: ignore[arg-type]


def box_raster(note: Annotation, image_size: tuple[int, int]) -> np.ndarray:
    """The union of ``note``'s boxes as an (H, W) bool array at the image's resolution."""
    width, height = note.size or image_size
    raster = np.zeros((height, width), dtype=bool)
    for xmin, ymin, xmax, ymax in note.boxes:
        # 1-based inclusive -> 0-based half-open, clamped to the image
        x0, y0 = max(xmin, 1) - 1, max(ymin, 1) - 1
        x1, y1 = min(xmax, width), min(ymax, height)
        if x0 < x1 and y0 < y1:
            raster[y0:y1, x0:x1] = True
    if (width, height) != tuple(image_size):
        scaled = Image.fromarray(raster.astype(np.uint8) * 255).resize(image_size, Image.Resampling.NEAREST)
        raster = np.asarray(scaled) > 0
    return raster


def _layout(root: Path, label: str) -> tuple[Path, Path]:
    """``(image folder, XML folder)`` of the first layout that matches ``root``."""
    for base in (root / "ILSVRC", root):
        images, xmls = base / "Data" / "CLS-LOC" / "val", base / "Annotations" / "CLS-LOC" / "val"
        if images.is_dir() and xmls.is_dir():
            return images, xmls
    if _has_xml(root):
        return root, root
    for sibling in _SIBLINGS:
        for candidate in (root.parent / sibling / root.name, root.parent / sibling):
            if candidate.is_dir() and candidate.resolve() != root.resolve() and _has_xml(candidate):
                return root, candidate
    raise ConfigError(f"dataset {label!r}: no bounding-box XML found for {str(root)!r}; expected one of: {_LAYOUTS}")


def _has_xml(folder: Path) -> bool:
    return next(folder.rglob("*.xml"), None) is not None
