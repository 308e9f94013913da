"""imagenet:PATH on a tiny ILSVRC-style copy (JPEG + XML) that the tests write: layouts, labels, exact box masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xaiopt.errors import ConfigError
from xaiopt.zoo import load_dataset
from xaiopt.zoo.classes import imagenet_wnids

WNIDS = imagenet_wnids()


def annotation_xml(size: tuple[int, int], objects: list[tuple[str, tuple[int, int, int, int]]]) -> str:
    boxes = "".join(
        f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
        f"<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for name, (x0, y0, x1, y1) in objects
    )
    return (f"<annotation><folder>val</folder><filename>x</filename><source><database>ILSVRC_2012</database>"
            f"</source><size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
            f"<segmented>0</segmented>{boxes}</annotation>")


def write_image(file: Path, size: tuple[int, int], seed: int) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(file, quality=90)


def write_imagenet(images: Path, xmls: Path, per_class: dict[str, int], size=(48, 40)) -> list[str]:
    """``per_class[wnid]`` validation images of each class, a centred box each; returns the stems."""
    stems = []
    number = 1
    for wnid, count in per_class.items():
        for _ in range(count):
            stem = f"ILSVRC2012_val_{number:08d}"
            write_image(images / f"{stem}.JPEG", size, number)
            xmls.mkdir(parents=True, exist_ok=True)
            (xmls / f"{stem}.xml").write_text(annotation_xml(size, [(wnid, (15, 12, 34, 29))]))
            stems.append(stem)
            number += 1
    return stems


CLASSES = {WNIDS[0]: 2, WNIDS[7]: 2, WNIDS[999]: 2}


@pytest.mark.parametrize("layout", ["kaggle", "kaggle-ilsvrc", "side-by-side", "bbox-sibling", "annotations-sibling"])
def test_layouts_give_the_same_labels(tmp_path: Path, layout: str) -> None:
    root = tmp_path / "imagenet"
    if layout.startswith("kaggle"):
        base = root / "ILSVRC"
        write_imagenet(base / "Data" / "CLS-LOC" / "val", base / "Annotations" / "CLS-LOC" / "val", CLASSES)
        path = base if layout == "kaggle-ilsvrc" else root
    elif layout == "side-by-side":
        write_imagenet(root / "val", root / "val", CLASSES)
        path = root / "val"
    elif layout == "bbox-sibling":
        write_imagenet(root / "val", root / "bbox" / "val", CLASSES)  # ILSVRC2012_bbox_val_v3.tgz unpacks to val/
        path = root / "val"
    else:
        write_imagenet(root / "val", root / "Annotations", CLASSES)
        path = root / "val"
    data = load_dataset(f"imagenet:{path}", n=6, image_size=32)
    assert data.y.tolist() == [0, 7, 999, 0, 7, 999]
    assert data.num_classes == 1000 and data.class_names[0] == "tench"
    assert data.masks is not None and data.masks.shape == (6, 1, 32, 32) and data.masks.dtype == torch.bool
    assert data.x.shape == (6, 3, 32, 32)


def test_a_box_becomes_exactly_its_pixels_after_resize_and_crop(tmp_path: Path) -> None:
    # A 100x80 image resized to 40 (shorter side): 50x40, both axes by 1/2; the centre crop drops
    # 5 columns on the left. Box columns 21..60, rows 11..30 (1-based, inclusive) are the 0-based
    # pixels 20..59 / 10..29. Nearest neighbour maps output pixel j to source 2j+1, so resized
    # columns 10..29 and rows 5..14 are in the box; cropped: columns 5..24, rows 5..14.
    # A second box of another class (a distractor) is not part of the mask.
    root = tmp_path / "val"
    write_image(root / "a.JPEG", (100, 80), 0)
    (root / "a.xml").write_text(annotation_xml((100, 80), [(WNIDS[5], (21, 11, 60, 30)),
                                                           (WNIDS[6], (70, 50, 95, 75))]))
    data = load_dataset(f"imagenet:{root}", n=1, image_size=40)
    expected = torch.zeros(40, 40, dtype=torch.bool)
    expected[5:15, 5:25] = True
    assert data.y.tolist() == [5]
    assert torch.equal(data.masks[0, 0], expected)


def test_boxes_of_the_class_are_united_and_clamped(tmp_path: Path) -> None:
    # no resize at 32x32; the second box runs over the border (clamped), 1-based xmin=1 is column 0
    root = tmp_path / "val"
    write_image(root / "a.JPEG", (32, 32), 0)
    (root / "a.xml").write_text(annotation_xml((32, 32), [(WNIDS[3], (1, 1, 4, 2)), (WNIDS[3], (30, 31, 40, 40))]))
    mask = load_dataset(f"imagenet:{root}", n=1, image_size=32).masks[0, 0]
    expected = torch.zeros(32, 32, dtype=torch.bool)
    expected[0:2, 0:4] = True
    expected[30:32, 29:32] = True
    assert torch.equal(mask, expected)


def test_a_resized_copy_scales_the_boxes(tmp_path: Path) -> None:
    # the XML speaks of the original 64x64 image; the file on disk is a 32x32 copy
    root = tmp_path / "val"
    write_image(root / "a.JPEG", (32, 32), 0)
    (root / "a.xml").write_text(annotation_xml((64, 64), [(WNIDS[3], (1, 1, 32, 64))]))
    mask = load_dataset(f"imagenet:{root}", n=1, image_size=32).masks[0, 0]
    expected = torch.zeros(32, 32, dtype=torch.bool)
    expected[:, :16] = True
    assert torch.equal(mask, expected)


def test_an_image_whose_box_is_cropped_away_is_replaced_by_one_of_its_class(tmp_path: Path) -> None:
    root = tmp_path / "val"
    for i, box in enumerate([(1, 1, 8, 40), (20, 10, 30, 30), (20, 10, 30, 30)]):  # the first: left edge only
        write_image(root / f"{i}.JPEG", (80, 40), i)
        (root / f"{i}.xml").write_text(annotation_xml((80, 40), [(WNIDS[1], box)]))
    data = load_dataset(f"imagenet:{root}", n=2, image_size=40)  # 80x40: the crop keeps columns 20..59
    assert data.masks.flatten(1).any(1).all() and data.y.tolist() == [1, 1]
    with pytest.raises(ConfigError, match="only 2 images are usable .1 refused: no object pixels left"):
        load_dataset(f"imagenet:{root}", n=3, image_size=40)


def test_class_subset_is_seeded_and_balanced(tmp_path: Path) -> None:
    per_class = {WNIDS[i]: 3 for i in (2, 100, 200, 300, 400, 500, 600, 700)}
    write_imagenet(tmp_path / "val", tmp_path / "val", per_class, size=(16, 16))
    name = f"imagenet:{tmp_path / 'val'}"
    seen = set()
    for seed in range(3):
        data = load_dataset(name, n=8, seed=seed, image_size=16, n_classes=4)
        y = data.y.tolist()
        assert len(set(y)) == 4 and all(y.count(c) == 2 for c in set(y))
        assert set(y) <= {2, 100, 200, 300, 400, 500, 600, 700}
        assert load_dataset(name, n=8, seed=seed, image_size=16, n_classes=4).y.tolist() == y
        seen.add(tuple(sorted(set(y))))
    assert len(seen) > 1
    odd = load_dataset(name, n=7, seed=0, image_size=16, n_classes=4).y.tolist()  # 7 over 4 classes: 2,2,2,1
    assert sorted(odd.count(c) for c in set(odd)) == [1, 2, 2, 2]


def test_classes_option_maps_the_wnids(tmp_path: Path) -> None:
    write_imagenet(tmp_path / "val", tmp_path / "val", {WNIDS[0]: 1, WNIDS[999]: 1}, size=(16, 16))
    data = load_dataset(f"imagenet:{tmp_path / 'val'}", n=2, image_size=16, classes=[WNIDS[999], "x", WNIDS[0]])
    assert data.y.tolist() == [0, 2] and data.num_classes == 3


def test_user_mistakes_are_one_line(tmp_path: Path) -> None:
    stems = write_imagenet(tmp_path / "val", tmp_path / "val", {WNIDS[0]: 2}, size=(16, 16))
    name = f"imagenet:{tmp_path / 'val'}"
    (tmp_path / "val" / f"{stems[1]}.xml").unlink()
    with pytest.raises(ConfigError) as info:
        load_dataset(name, n=1, image_size=16)
    assert f"{stems[1]}.JPEG' has no bounding-box XML ({stems[1]}.xml)" in str(info.value)
    (tmp_path / "val" / f"{stems[1]}.xml").write_text(annotation_xml((16, 16), [("n99999999", (1, 1, 4, 4))]))
    with pytest.raises(ConfigError, match=r"class 'n99999999' is not in the class mapping \(ImageNet wnids\)"):
        load_dataset(name, n=1, image_size=16)
    (tmp_path / "val" / f"{stems[1]}.xml").write_text("<annotation><object>")
    with pytest.raises(ConfigError, match="cannot read .* as annotation XML"):
        load_dataset(name, n=1, image_size=16)
    (tmp_path / "val" / f"{stems[1]}.xml").write_text("<annotation><size/></annotation>")
    with pytest.raises(ConfigError, match="has no <object>"):
        load_dataset(name, n=1, image_size=16)
    with pytest.raises(ConfigError, match="is not a directory"):
        load_dataset(f"imagenet:{tmp_path / 'nope'}", n=1)
    (tmp_path / "bare").mkdir()
    write_image(tmp_path / "bare" / "a.JPEG", (16, 16), 0)
    with pytest.raises(ConfigError, match="no bounding-box XML found"):
        load_dataset(f"imagenet:{tmp_path / 'bare'}", n=1)
