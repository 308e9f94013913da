"""Folder names become indices of the model's classes: wnids, integers, data.classes, plain names."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xaiopt.errors import ConfigError
from xaiopt.zoo import load_dataset
from xaiopt.zoo.classes import imagenet_class_map, imagenet_names, imagenet_wnids

ROOT = Path(__file__).resolve().parents[2]


def write_folders(root: Path, names: list[str], per_class: int = 2, size: int = 20) -> None:
    rng = np.random.default_rng(0)
    for name in names:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / name / f"{i}.png")


def test_the_embedded_synsets_are_the_ilsvrc_2012_list() -> None:
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 and len(set(wnids)) == 1000
    assert list(wnids) == sorted(wnids)
    assert wnids[0] == "n01440764" and wnids[-1] == "n15075141"
    assert imagenet_names()[0] == "tench" and imagenet_names()[999] == "toilet tissue"
    assert imagenet_class_map().index["n01443537"] == 1
    # an installed wheel carries the file
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "data/*.txt" in package_data["xaiopt.zoo"]


def test_wnid_folders_give_the_imagenet_index(tmp_path: Path) -> None:
    write_folders(tmp_path / "photos", ["n15075141", "n01440764", "n01443537"])
    data = load_dataset(f"imagefolder:{tmp_path / 'photos'}", n=6, image_size=16)
    assert data.num_classes == 1000 and len(data.class_names) == 1000
    assert data.class_names[999] == "toilet tissue"
    assert data.y.tolist() == [0, 1, 999, 0, 1, 999]  # balanced, in index order


def test_integer_folders_are_indices(tmp_path: Path) -> None:
    write_folders(tmp_path / "photos", ["999", "17", "0"], per_class=1)
    data = load_dataset(f"imagefolder:{tmp_path / 'photos'}", n=3, image_size=16)
    assert data.y.tolist() == [0, 17, 999] and data.num_classes == 1000


def test_plain_names_keep_the_sorted_order(tmp_path: Path) -> None:
    write_folders(tmp_path / "photos", ["dog", "cat"], per_class=1)
    data = load_dataset(f"imagefolder:{tmp_path / 'photos'}", n=2, image_size=16)
    assert data.class_names == ("cat", "dog") and data.y.tolist() == [0, 1]


def test_classes_list_and_file_map_by_position(tmp_path: Path) -> None:
    write_folders(tmp_path / "photos", ["dog", "cat"], per_class=1)
    names = ["plane", "dog", "car", "cat"]
    data = load_dataset(f"imagefolder:{tmp_path / 'photos'}", n=2, image_size=16, classes=names)
    assert data.class_names == tuple(names) and data.num_classes == 4
    assert sorted(data.y.tolist()) == [1, 3]
    (tmp_path / "names.txt").write_text("\n".join(names) + "\n\n")
    again = load_dataset(f"imagefolder:{tmp_path / 'photos'}", n=2, image_size=16, classes=str(tmp_path / "names.txt"))
    assert again.class_names == tuple(names) and again.y.tolist() == data.y.tolist()


@pytest.mark.parametrize(
    ("folders", "classes", "fragment"),
    [
        (["n01440764", "n99999999"], None, "folder 'n99999999' is not in the class mapping (ImageNet wnids); "
                                           "valid: one of the 1000 ILSVRC-2012 wnids (n01440764 ... n15075141)"),
        (["n01440764", "cats"], None, "folder 'cats' is not an ImageNet wnid while 'n01440764' is"),
        (["3", "cats"], None, "folder 'cats' is not an integer class index while '3' is"),
        (["cat", "dog"], ["cat", "bird"], "folder 'dog' is not in the class mapping (data.classes); valid: cat, bird"),
        (["cat"], ["cat", "cat"], "data.classes: 'cat' appears twice"),
        (["cat"], "missing.txt", "data.classes: cannot read 'missing.txt'"),
    ],
)
def test_a_name_outside_the_mapping_is_one_line(tmp_path: Path, folders: list[str], classes, fragment: str) -> None:
    write_folders(tmp_path / "photos", folders, per_class=1)
    with pytest.raises(ConfigError) as info:
        load_dataset(f"imagefolder:{tmp_path / 'photos'}", n=1, image_size=16, classes=classes)
    assert "\n" not in str(info.value) and fragment in str(info.value)


def test_a_class_file_with_a_hole_is_refused(tmp_path: Path) -> None:
    write_folders(tmp_path / "photos", ["cat"], per_class=1)
    (tmp_path / "names.txt").write_text("cat\n\ndog\n")
    with pytest.raises(ConfigError, match="line 2 of .* is empty"):
        load_dataset(f"imagefolder:{tmp_path / 'photos'}", n=1, image_size=16, classes=str(tmp_path / "names.txt"))


def test_class_subset_on_a_folder_is_seeded_and_balanced(tmp_path: Path) -> None:
    wnids = imagenet_wnids()
    chosen = [wnids[i] for i in (0, 10, 20, 30, 40, 50)]
    write_folders(tmp_path / "photos", chosen, per_class=3, size=8)
    root = f"imagefolder:{tmp_path / 'photos'}"
    subsets = {}
    for seed in range(4):
        data = load_dataset(root, n=6, seed=seed, image_size=8, n_classes=3)
        counts = {c: data.y.tolist().count(c) for c in set(data.y.tolist())}
        assert len(counts) == 3 and set(counts.values()) == {2}
        assert set(counts) <= {0, 10, 20, 30, 40, 50}
        subsets[seed] = tuple(sorted(counts))
        assert load_dataset(root, n=6, seed=seed, image_size=8, n_classes=3).y.tolist() == data.y.tolist()
    assert len(set(subsets.values())) > 1  # the seed decides which classes
    # the subset does not depend on n
    assert set(load_dataset(root, n=3, seed=0, image_size=8, n_classes=3).y.tolist()) == set(subsets[0])
    with pytest.raises(ConfigError, match=r"data.n_classes=7 is invalid; valid: 1 to 6"):
        load_dataset(root, n=7, image_size=8, n_classes=7)
