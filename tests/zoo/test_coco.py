"""coco:PATH on a tiny COCO-2017-style folder that the tests write (instances JSON, polygons and run-length masks)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xaiopt.errors import ConfigError
from xaiopt.zoo import load_dataset
from xaiopt.zoo.coco import rle_counts

SIZE = 32
CATEGORIES = [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}, {"id": 3, "name": "car"}]  # not in id order


def column_major_runs(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO counts of a mask: runs of 0s and 1s, column by column, starting with 0s."""
    flat = mask.T.ravel()
    runs, value, length = [], False, 0
    for v in flat:
        if v == value:
            length += 1
        else:
            runs.append(length)
            value, length = not value, 1
    runs.append(length)
    return runs


def write_coco(root: Path, annotations: list[dict], images: int = 3, split: str = "val") -> Path:
    (root / "annotations").mkdir(parents=True)
    (root / f"{split}2017").mkdir()
    infos = []
    for i in range(1, images + 1):
        name = f"{i:012d}.jpg"
        pixels = np.random.default_rng(i).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"{split}2017" / name)
        infos.append({"id": i, "file_name": name, "height": SIZE, "width": SIZE})
    for k, a in enumerate(annotations):
        a.setdefault("id", 100 + k)
        a.setdefault("iscrowd", 0)
    (root / "annotations" / f"instances_{split}2017.json").write_text(
        json.dumps({"images": infos, "annotations": annotations, "categories": CATEGORIES}))
    return root


CROWD = np.zeros((SIZE, SIZE), dtype=bool)
CROWD[20:26, 2:11] = True  # 54 pixels of a crowd of dogs


def scene() -> list[dict]:
    return [
        # image 1: a person (polygon, 9 x 9 pixels with its boundary) outweighs a small dog
        {"image_id": 1, "category_id": 1, "area": 64.0, "segmentation": [[4, 4, 12, 4, 12, 12, 4, 12]]},
        {"image_id": 1, "category_id": 18, "area": 9.0, "segmentation": [[20, 20, 23, 20, 23, 23]]},
        # image 2: a crowd of dogs (uncompressed run-length) and a dog instance; a car smaller than both together
        {"image_id": 2, "category_id": 18, "area": 54.0, "iscrowd": 1,
         "segmentation": {"size": [SIZE, SIZE], "counts": column_major_runs(CROWD)}},
        {"image_id": 2, "category_id": 18, "area": 16.0, "segmentation": [[28, 28, 31, 28, 31, 31, 28, 31]]},
        {"image_id": 2, "category_id": 3, "area": 60.0, "segmentation": [[14, 2, 24, 2, 24, 8, 14, 8]]},
        # image 3: a car as a compressed run-length string: 40 zeros, 3 ones, 981 zeros (column-major)
        {"image_id": 3, "category_id": 3, "area": 3.0, "iscrowd": 1,
         "segmentation": {"size": [SIZE, SIZE], "counts": "X13en0"}},
    ]


def test_the_compressed_run_length_strings_by_hand():
    assert rle_counts("324") == [3, 2, 4]          # the third count is stored as is
    assert rle_counts("3244") == [3, 2, 4, 6]      # from the fourth: 4 + the count two before (2)
    assert rle_counts("512O") == [5, 1, 2, 0]      # 'O' is -1 (sign bit): -1 + 1
    assert rle_counts("X13en0") == [40, 3, 981]    # 40 in two 5-bit groups, 981 in three


def test_targets_and_masks_of_the_largest_category(tmp_path):
    root = write_coco(tmp_path / "coco", scene())
    data = load_dataset(f"coco:{root}", n=3, image_size=SIZE)
    assert data.class_names == ("person", "car", "dog")  # the file's categories in id order
    by_class = {int(y): m[0].numpy() for y, m in zip(data.y, data.masks)}
    assert sorted(by_class) == [0, 1, 2]
    person = np.zeros((SIZE, SIZE), dtype=bool)
    person[4:13, 4:13] = True
    assert np.array_equal(by_class[0], person)
    # image 2: the dogs (54 + 16) outweigh the car (60); the mask is the crowd and the instance together
    dogs = CROWD.copy()
    dogs[28:32, 28:32] = True
    assert np.array_equal(by_class[2], dogs)
    car = np.zeros((SIZE, SIZE), dtype=bool)
    car[8:11, 1] = True  # column 0 is 32 zeros, then 8 more in column 1, then rows 8-10 of column 1
    assert np.array_equal(by_class[1], car)


def test_a_class_subset_and_the_train_split(tmp_path):
    root = write_coco(tmp_path / "coco", scene(), split="train")
    data = load_dataset(f"coco:{root}", n=1, image_size=SIZE, split="train", n_classes=1, seed=3)
    assert len(data.y) == 1 and data.masks[0].any()


@pytest.mark.parametrize(("change", "message"), [
    ("no_annotations", "annotations/instances_val2017.json' is missing; valid: the folder that holds"),
    ("no_image", "000000000002.jpg' (id 2) is missing"),
    ("bad_split", "data.split='test' is invalid for dataset 'coco:"),
    ("classes", "'car'"),
])
def test_a_mistake_is_one_line(tmp_path, change, message):
    root = write_coco(tmp_path / "coco", scene())
    kwargs: dict = {"n": 3, "image_size": SIZE}
    if change == "no_annotations":
        (root / "annotations" / "instances_val2017.json").unlink()
    elif change == "no_image":
        (root / "val2017" / "000000000002.jpg").unlink()
    elif change == "bad_split":
        kwargs["split"] = "test"
    elif change == "classes":
        kwargs["classes"] = ["person", "dog"]  # the model knows no car
    with pytest.raises(ConfigError) as err:
        load_dataset(f"coco:{root}", **kwargs)
    assert "\n" not in str(err.value) and message in str(err.value), str(err.value)
