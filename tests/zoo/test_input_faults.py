"""Evaluation images too large to load: one line, exit 2, before any image or model is loaded.

``data.image_size`` is at most 4096 pixels; a batch that the memory available cannot hold is refused
with the largest ``n_samples`` that fits; an image PIL refuses as a decompression bomb is named.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from xaiopt.cli import main
from xaiopt.errors import ConfigError
from xaiopt.zoo import batch_size, load_dataset

TINY = '''
from torch import nn


def build(num_classes=2):
    return nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(2, num_classes))
'''


@pytest.fixture(autouse=True)
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "xaiopt_test_tiny_input.py").write_text(TINY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "photos" / name / f"{i}.png")
    yield tmp_path / "photos"
    sys.modules.pop("xaiopt_test_tiny_input", None)


def create(tmp_path: Path, capsys, data: dict,
           model: str = "module:xaiopt_test_tiny_input:build") -> tuple[int, list[str]]:
    cfg = {
        "name": "inputs", "device": "cpu", "model": {"name": model},
        "data": {"name": f"imagefolder:{tmp_path / 'photos'}", "n_samples": 4, "target": "predicted", **data},
        "space": {"canonize": [False], "first_layer": ["same"], "layer_groups": 1, "rules": ["epsilon"]},
        "metrics": ["sparseness"], "sampler": "random", "runtime": {"heatmaps": 0},
    }
    path = tmp_path / "inputs.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code = main(["study", "create", str(path), "--storage", f"sqlite:///{tmp_path / 's.db'}"])
    out, err = capsys.readouterr()
    return code, [line for line in (out + err).splitlines() if line.strip() and not line.startswith("xaiopt: [")]


@pytest.mark.parametrize("size", [20000, 12000, 4097])
def test_an_image_size_beyond_4096_is_one_line_before_anything_loads(tmp_path, capsys, size):
    # the model does not exist: the size is refused before the model (or any image) is loaded
    code, lines = create(tmp_path, capsys, {"image_size": size}, model="module:xaiopt_no_such_model:build")
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"xaiopt: error: data.image_size={size} is too large for dataset 'imagefolder:")
    assert "valid: 1 to 4096 pixels" in lines[0]
    assert not (tmp_path / "s.db").exists()


def test_the_largest_size_still_loads(folder):
    data = load_dataset(f"imagefolder:{folder}", n=1, image_size=4096)
    assert data.x.shape == (1, 3, 4096, 4096)


def test_a_batch_larger_than_the_memory_available_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(batch_size, "available_memory", lambda: 10**9)
    # 16 x 3 x 2048^2 float32 = 805 MB, three copies while loading: more than 1 GB
    code, lines = create(tmp_path, capsys, {"image_size": 2048, "n_samples": 16},
                         model="module:xaiopt_no_such_model:build")
    assert code == 2
    assert lines == ["xaiopt: error: data: 16 samples of 2048x2048 pixels from dataset "
                     f"'imagefolder:{tmp_path / 'photos'}' make an evaluation batch of 0.8 GB (loading holds 3 "
                     "copies), more than the 1.0 GB of memory available; valid: data.n_samples at most 6 at this "
                     "size, or a smaller data.image_size"]
    assert not (tmp_path / "s.db").exists()


def test_the_api_refuses_the_same_sizes(folder, monkeypatch):
    with pytest.raises(ConfigError, match=r"data.image_size=5000 is too large .* valid: 1 to 4096 pixels"):
        load_dataset(f"imagefolder:{folder}", n=2, image_size=5000)
    monkeypatch.setattr(batch_size, "available_memory", lambda: 10**6)
    with pytest.raises(ConfigError, match=r"valid: a smaller data.image_size$"):
        load_dataset(f"imagefolder:{folder}", n=2, image_size=1024)


def test_a_decompression_bomb_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    # PIL's limit made small, so that a 24x24 file stands for a 20000x20000 one
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    code, lines = create(tmp_path, capsys, {"image_size": 16})
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0] == (f"xaiopt: error: dataset 'imagefolder:{tmp_path / 'photos'}': "
                        f"'{tmp_path / 'photos' / 'cat' / '0.png'}' has 576 pixels, which PIL refuses to decode as a "
                        "possible decompression bomb; valid: images of at most 200 pixels (shrink it or take it out "
                        "of the dataset)")
    assert not (tmp_path / "s.db").exists()
