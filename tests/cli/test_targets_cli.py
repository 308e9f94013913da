"""A folder of pretrained-class images explains its true classes; the accuracy line and its chance warning.

The model is a tiny 1000-class module the test writes: dark images score class 0 (tench), bright
ones the last class (999, toilet tissue), so its accuracy on a folder is known exactly.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from xaiopt.cli import main
from xaiopt.config import load_config
from xaiopt.objective import get_benchmark
from xaiopt.objective.trial import Objective
from xaiopt.space import ExplainerSpec
from xaiopt.space.spec import GroupRule

TINYNET = '''
import torch
from torch import nn


def build(num_classes=1000):
    model = nn.Sequential(nn.Conv2d(3, 2, 1, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(2, num_classes, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]]).view(2, 3, 1, 1) / 3)
        model[4].weight.zero_()
        model[4].weight[num_classes - 1, 0] = 5.0  # bright -> the last class
        model[4].weight[0, 1] = 5.0                # dark -> class 0
    return model
'''
TENCH, TOILET_TISSUE = "n01440764", "n15075141"


@pytest.fixture(autouse=True)
def tinynet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "xaiopt_test_tinynet.py").write_text(TINYNET)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    yield
    sys.modules.pop("xaiopt_test_tinynet", None)


def write_folder(root: Path, folders: dict[str, str], per_class: int = 4) -> None:
    """``folders[name]``: "dark" or "bright" images."""
    rng = np.random.default_rng(0)
    for name, tone in folders.items():
        (root / name).mkdir(parents=True)
        base = 20 if tone == "dark" else 225
        for i in range(per_class):
            pixels = (base + rng.integers(0, 10, (24, 24, 3))).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def write_config(tmp_path: Path, data: dict, model: dict | None = None) -> Path:
    cfg = {
        "name": "targets",
        "device": "cpu",
        "model": model or {"name": "module:xaiopt_test_tinynet:build"},
        "data": {"n_samples": 8, "image_size": 16, **data},
        "space": {"canonize": [False], "first_layer": ["same"], "layer_groups": 1, "rules": ["epsilon"],
                  "epsilon": [1e-9]},
        "metrics": ["sparseness"],
        "sampler": "random",
        "runtime": {"heatmaps": 0},
    }
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def create(capsys, config: Path, storage: str) -> tuple[int, str, str]:
    code = main(["study", "create", str(config), "--storage", storage])
    out, err = capsys.readouterr()
    return code, out, err


def test_wnid_folders_explain_their_imagenet_classes(tmp_path: Path, capsys) -> None:
    write_folder(tmp_path / "photos", {TENCH: "dark", TOILET_TISSUE: "bright"})
    config = write_config(tmp_path, {"name": f"imagefolder:{tmp_path / 'photos'}"})
    code, out, err = create(capsys, config, f"sqlite:///{tmp_path / 's.db'}")
    assert code == 0, err
    assert "evaluation batch: 8 samples, 2 classes, accuracy 1.00 against labels" in out
    assert "warning" not in err

    bench = get_benchmark(load_config(config), torch.device("cpu"))
    assert bench.y.tolist() == [0, 999] * 4 and bench.num_classes == 1000
    # the trial's attributions explain exactly those logits: epsilon-LRP of this bias-free ReLU
    # net conserves relevance, each map sums to the explained logit (and the other one is ~0)
    spec = ExplainerSpec(canonize=False, first_layer="same",
                         groups={"conv1": GroupRule("epsilon", 1e-9), "classifier": GroupRule("epsilon", 1e-9)})
    _, _, attributions = Objective(load_config(config), device=torch.device("cpu")).evaluate(spec)
    explained = bench.logits.gather(1, bench.y.view(-1, 1)).squeeze(1)
    assert (explained > 5).all()
    assert torch.allclose(attributions.sum(dim=(1, 2, 3)), explained, rtol=1e-4)


def test_wrong_classes_warn_and_predicted_targets_follow_the_model(tmp_path: Path, capsys) -> None:
    write_folder(tmp_path / "photos", {TENCH: "bright", TOILET_TISSUE: "dark"})  # the model is always wrong
    config = write_config(tmp_path, {"name": f"imagefolder:{tmp_path / 'photos'}"})
    code, out, err = create(capsys, config, f"sqlite:///{tmp_path / 'a.db'}")
    assert code == 0, err
    assert "evaluation batch: 8 samples, 2 classes, accuracy 0.00 against labels" in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xaiopt: warning: accuracy 0.00 against labels is at chance")
    assert "data.target: predicted" in lines[0]

    config = write_config(tmp_path, {"name": f"imagefolder:{tmp_path / 'photos'}", "target": "predicted"})
    code, out, err = create(capsys, config, f"sqlite:///{tmp_path / 'b.db'}")
    assert code == 0, err
    assert "accuracy 1 by construction (data.target: predicted); agreement with the dataset labels 0.00" in out
    assert "warning" not in err
    bench = get_benchmark(load_config(config), torch.device("cpu"))
    assert bench.y.tolist() == [999, 0] * 4 == bench.logits.argmax(1).tolist()
    assert bench.labels.tolist() == [0, 999] * 4


def test_plain_folder_names_under_an_imagenet_model_warn(tmp_path: Path, capsys) -> None:
    # the measured problem: folders "cat"/"dog" become logits 0/1 of a 1000-class model
    write_folder(tmp_path / "photos", {"cat": "dark", "dog": "bright"})
    config = write_config(tmp_path, {"name": f"imagefolder:{tmp_path / 'photos'}"})
    code, out, err = main(["run", str(config), "--storage", f"sqlite:///{tmp_path / 'r.db'}", "--n-trials", "1"]), \
        *capsys.readouterr()
    assert code == 0, err
    assert "evaluation batch: 8 samples, 2 classes, accuracy 0.50 against labels" in err
    assert "at chance level (1/2 = 0.50, 8 samples)" in err
    assert "(the dataset has 2 classes, the model 1000 outputs)" in err


def test_integer_folders_and_the_model_width(tmp_path: Path, capsys) -> None:
    write_folder(tmp_path / "photos", {"0": "dark", "999": "bright"})
    config = write_config(tmp_path, {"name": f"imagefolder:{tmp_path / 'photos'}"})
    code, out, err = create(capsys, config, f"sqlite:///{tmp_path / 'i.db'}")
    assert code == 0 and "accuracy 1.00 against labels" in out, err
    # the same folders under a 10-class model: target 999 has no logit
    config = write_config(tmp_path, {"name": f"imagefolder:{tmp_path / 'photos'}"},
                          model={"name": "module:xaiopt_test_tinynet:build", "num_classes": 10})
    code, out, err = create(capsys, config, f"sqlite:///{tmp_path / 'w.db'}")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "has target class 999 ('999'), but model 'module:xaiopt_test_tinynet:build' has " \
                               "10 outputs (valid: targets 0 to 9)" in lines[0]
    assert not (tmp_path / "w.db").exists()


def _imagenet(root: Path, *, with_xml: bool = True) -> None:
    root.mkdir(parents=True)
    for i, (wnid, base) in enumerate([(TENCH, 20), (TOILET_TISSUE, 225)] * 2):
        Image.fromarray(np.full((24, 24, 3), base, np.uint8)).save(root / f"ILSVRC2012_val_{i:08d}.JPEG")
        if with_xml or i < 3:
            (root / f"ILSVRC2012_val_{i:08d}.xml").write_text(
                f"<annotation><size><width>24</width><height>24</height></size><object><name>{wnid}</name>"
                f"<bndbox><xmin>5</xmin><ymin>5</ymin><xmax>20</xmax><ymax>20</ymax></bndbox></object></annotation>")


def test_imagenet_study_with_box_masks(tmp_path: Path, capsys) -> None:
    _imagenet(tmp_path / "val")
    config = write_config(tmp_path, {"name": f"imagenet:{tmp_path / 'val'}", "n_samples": 4})
    code, out, err = create(capsys, config, f"sqlite:///{tmp_path / 'n.db'}")
    assert code == 0, err
    assert "evaluation batch: 4 samples, 2 classes, accuracy 1.00 against labels" in out
    bench = get_benchmark(load_config(config), torch.device("cpu"))
    assert bench.y.tolist() == [0, 999, 0, 999] and bench.masks is not None


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"name": "imagenet:missing-xml"}, "has no bounding-box XML (ILSVRC2012_val_00000003.xml)"),
        ({"name": "imagenet:/no/such/folder"}, "'/no/such/folder' is not a directory"),
        ({"name": "imagefolder:bad-wnid"}, "folder 'n99999999' is not in the class mapping (ImageNet wnids)"),
        ({"name": "imagefolder:plain", "classes": ["cat", "bird"]},
         "folder 'dog' is not in the class mapping (data.classes); valid: cat, bird"),
        ({"name": "imagefolder:plain", "classes": "nope.txt"}, "data.classes: cannot read 'nope.txt'"),
        ({"name": "voc:plain"}, "no VOCdevkit/VOC2012 under"),
        ({"name": "imagefolder:plain", "target": "argmax"}, "data.target: Input should be 'label' or 'predicted'"),
    ],
)
def test_user_mistakes_are_one_line_exit_2(tmp_path: Path, capsys, data: dict, fragment: str) -> None:
    _imagenet(tmp_path / "missing-xml", with_xml=False)
    write_folder(tmp_path / "bad-wnid", {TENCH: "dark", "n99999999": "bright"}, per_class=1)
    write_folder(tmp_path / "plain", {"cat": "dark", "dog": "bright"}, per_class=1)
    config = write_config(tmp_path, {**data, "n_samples": 2})
    code, out, err = create(capsys, config, f"sqlite:///{tmp_path / 'e.db'}")
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xaiopt: error: ") and fragment in lines[0], lines
    assert not (tmp_path / "e.db").exists()


def test_too_few_samples_to_tell_is_no_chance_warning():
    # 2 samples: even 2 of 2 correct is within two standard errors of 1/2, so nothing can be said
    import torch

    from xaiopt.config import parse_config
    from xaiopt.objective.benchmark import build_benchmark

    bench = build_benchmark(parse_config({"data": {"n_samples": 2}, "space": {"canonize": [False]}}),
                            torch.device("cpu"))
    summary = bench.evaluation()
    assert summary["samples"] == 2 and summary["label_accuracy"] == 1.0
    assert summary["at_chance"] is False
    # with 8 samples the same rule does warn for a model at chance (the test above), and not for this one
    bench8 = build_benchmark(parse_config({"data": {"n_samples": 8}, "space": {"canonize": [False]}}),
                             torch.device("cpu"))
    assert bench8.evaluation()["at_chance"] is False and bench8.evaluation()["label_accuracy"] > 0.5
