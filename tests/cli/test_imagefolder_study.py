"""A study on a user's data: an image folder with masks the test writes, a torchvision ResNet."""

from __future__ import annotations

import json

import numpy as np
import optuna
import yaml
from PIL import Image

from xaiopt.cli import main
from xaiopt.objective.attrs import spec_dict


def write_folder(root):
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / "data" / c).mkdir(parents=True)
        (root / "data_masks" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / "data" / c / f"{i}.png")
            mask = np.zeros((40, 40), np.uint8)
            mask[8:24, 8:24] = 255
            Image.fromarray(mask).save(root / "data_masks" / c / f"{i}.png")


def test_resnet_on_an_image_folder_with_masks(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_folder(tmp_path)
    cfg = {
        "name": "folder",
        "device": "cpu",
        "seed": 3,
        "model": {"name": "torchvision:resnet18", "num_classes": 2},
        "data": {"name": f"imagefolder:{tmp_path / 'data'}", "n_samples": 4, "image_size": 32},
        "space": {"layer_groups": 2, "rules": ["gamma", "zplus"], "gamma": [0.25], "first_layer": ["zbox"],
                  "canonize": [True, False]},
        "metrics": ["relevance_mass_accuracy", "pointing_game",
                    {"name": "mprt", "params": {"layer_order": "top_down"}}],
        "sampler": "grid",
        "runtime": {"heatmaps": 2},
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(cfg))
    storage = f"sqlite:///{tmp_path / 'f.db'}"
    assert main(["study", "create", "s.yaml", "--storage", storage]) == 0
    assert main(["study", "optimize", "folder", "--n-trials", "3", "--storage", storage, "--no-progress"]) == 0
    capsys.readouterr()
    study = optuna.load_study(study_name="folder", storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 3
    # canonized ResNet trials explain through the twin with explicit residual sums
    assert {spec_dict(t)["canonize"] for t in complete} == {True, False}
    for t in complete:
        rma, pointing, mprt = t.values
        assert 0.0 <= rma <= 1.0 and 0.0 <= pointing <= 1.0 and -1.0 <= mprt <= 1.0
    assert main(["study", "pareto", "folder", "--format", "json", "--storage", storage]) == 0
    rows = json.loads(capsys.readouterr().out)["trials"]
    assert rows and set(rows[0]["values"]) == {"relevance_mass_accuracy", "pointing_game", "mprt"}


def test_mask_metrics_on_a_folder_without_masks_are_refused_at_create(tmp_path, capsys):
    write_folder(tmp_path)
    import shutil

    shutil.rmtree(tmp_path / "data_masks")
    cfg = {"model": {"name": "torchvision:resnet18", "num_classes": 2},
           "data": {"name": f"imagefolder:{tmp_path / 'data'}", "n_samples": 2, "image_size": 32},
           "metrics": ["sparseness", "pointing_game"]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(cfg))
    storage = f"sqlite:///{tmp_path / 'f.db'}"
    assert main(["study", "create", str(tmp_path / "s.yaml"), "--storage", storage]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pointing_game needs object masks" in err
    assert not (tmp_path / "f.db").exists()
