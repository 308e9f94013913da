"""voc:PATH on a tiny VOCdevkit/VOC2012 that the tests write (palette PNGs), read by torchvision's VOCSegmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xaiopt.errors import ConfigError
from xaiopt.zoo import load_dataset
from xaiopt.zoo.voc import VOC_CLASSES

CAT, DOG, PERSON = 8, 12, 15  # VOC labels (1-based; 0 background, 255 void)


def palette() -> list[int]:
    colours = [0] * 768
    for label in range(256):  # the devkit's bit-interleaved colour map
        r = g = b = 0
        c = label
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours[3 * label:3 * label + 3] = [r, g, b]
    return colours


def write_voc(root: Path, segmentations: dict[str, np.ndarray], splits: dict[str, list[str]]) -> None:
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    for i, (name, seg) in enumerate(segmentations.items()):
        pixels = np.random.default_rng(i).integers(0, 255, (*seg.shape, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(voc / "JPEGImages" / f"{name}.jpg")
        png = Image.frombytes("P", (seg.shape[1], seg.shape[0]), seg.astype(np.uint8).tobytes())
        png.putpalette(palette())
        png.save(voc / "SegmentationClass" / f"{name}.png")
    for split, names in splits.items():
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))


def scene(height: int = 32, width: int = 40) -> dict[str, np.ndarray]:
    """Four images: a cat with a wide void band, a dog-vs-person tie, a person, a second cat."""
    a = np.zeros((height, width), np.uint8)
    a[10:20, 14:24] = CAT          # 100 cat pixels ...
    a[5:28, 8:30][a[5:28, 8:30] == 0] = 255   # ... inside 406 void pixels, which are not object
    a[0:3, 0:10] = DOG             # 30 dog pixels
    b = np.zeros((height, width), np.uint8)
    b[0:5, 10:20] = PERSON         # 50 and 50: the lower label (dog) wins
    b[20:25, 10:20] = DOG
    c = np.zeros((height, width), np.uint8)
    c[8:24, 12:28] = PERSON
    d = np.zeros((height, width), np.uint8)
    d[4:30, 6:34] = CAT
    return {"2007_000001": a, "2007_000002": b, "2007_000003": c, "2007_000004": d}


def test_the_target_is_the_largest_class_and_the_mask_its_pixels(tmp_path: Path) -> None:
    segs = scene()
    write_voc(tmp_path, segs, {"val": list(segs), "train": ["2007_000003"]})
    data = load_dataset(f"voc:{tmp_path}", n=4, image_size=32)
    assert data.class_names == VOC_CLASSES and data.num_classes == 20
    # balanced: cat (7), dog (11), person (14), then the second cat
    assert data.y.tolist() == [CAT - 1, DOG - 1, PERSON - 1, CAT - 1]
    # 40x32 at image_size 32: no resize, the centre crop drops 4 columns on the left
    cat_masks = [m for m, y in zip(data.masks, data.y.tolist()) if y == CAT - 1]
    expected = torch.zeros(32, 32, dtype=torch.bool)
    expected[10:20, 10:20] = True
    assert any(torch.equal(m[0], expected) for m in cat_masks)
    dog = data.masks[data.y.tolist().index(DOG - 1), 0]
    expected_dog = torch.zeros(32, 32, dtype=torch.bool)
    expected_dog[20:25, 6:16] = True
    assert torch.equal(dog, expected_dog)


@pytest.mark.parametrize("where", ["root", "devkit", "voc2012"])
def test_any_of_the_three_folders_can_be_named(tmp_path: Path, where: str) -> None:
    segs = scene()
    write_voc(tmp_path, segs, {"val": list(segs)})
    path = {"root": tmp_path, "devkit": tmp_path / "VOCdevkit", "voc2012": tmp_path / "VOCdevkit" / "VOC2012"}[where]
    assert load_dataset(f"voc:{path}", n=3, image_size=16).y.tolist() == [CAT - 1, DOG - 1, PERSON - 1]


def test_split_and_class_subset(tmp_path: Path) -> None:
    segs = scene()
    write_voc(tmp_path, segs, {"val": list(segs), "train": ["2007_000003"]})
    assert load_dataset(f"voc:{tmp_path}", n=1, image_size=16, split="train").y.tolist() == [PERSON - 1]
    picks = [load_dataset(f"voc:{tmp_path}", n=1, image_size=16, n_classes=1, seed=s).y.tolist() for s in range(4)]
    assert picks == [load_dataset(f"voc:{tmp_path}", n=1, image_size=16, n_classes=1, seed=s).y.tolist()
                     for s in range(4)]
    assert len({tuple(p) for p in picks}) > 1


def test_classes_option_maps_the_voc_names(tmp_path: Path) -> None:
    segs = scene()
    write_voc(tmp_path, segs, {"val": list(segs)})
    model_classes = ["person", "dog", "cat"]
    data = load_dataset(f"voc:{tmp_path}", n=4, image_size=16, classes=model_classes)
    assert data.class_names == tuple(model_classes) and data.y.tolist() == [0, 1, 2, 2]
    with pytest.raises(ConfigError) as info:
        load_dataset(f"voc:{tmp_path}", n=4, image_size=16, classes=["person", "dog"])
    assert "VOC class 'cat' is not in the class mapping (data.classes); valid: person, dog" in str(info.value)


def test_user_mistakes_are_one_line(tmp_path: Path) -> None:
    segs = scene()
    write_voc(tmp_path, segs, {"val": list(segs)})
    for kwargs, fragment in [
        ({"name": f"voc:{tmp_path / 'nope'}"}, "no VOCdevkit/VOC2012 under"),
        ({"name": f"voc:{tmp_path}", "split": "test"}, "data.split='test' is invalid"),
        ({"name": f"voc:{tmp_path}", "split": "trainval"}, "trainval.txt' is missing"),
        ({"name": f"imagefolder:{tmp_path}", "split": "val"}, "data.split='val' is invalid for dataset 'imagefolder"),
    ]:
        with pytest.raises(ConfigError) as info:
            load_dataset(n=1, image_size=16, **kwargs)
        assert "\n" not in str(info.value) and fragment in str(info.value)
    (tmp_path / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "2007_000002.png").unlink()
    with pytest.raises(ConfigError, match="2007_000002.png' of val.txt is missing"):
        load_dataset(f"voc:{tmp_path}", n=1, image_size=16)
