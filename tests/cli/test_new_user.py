"""The first half hour on one's own model and photos, as a new user runs it: a package of their own in
a folder (a CNN with batch norms, a plain ``+`` residual and functional ReLUs), a folder of photos
without masks, and ``xaiopt`` run from that folder without PYTHONPATH, in a subprocess as from a shell.

Checked: ``module:`` resolves from the current directory (and from the study file's directory), the
line that says which metrics the data allows, the cost line measured before the first trial,
``--dry-run`` writing nothing, and a completed trial. Also: configured metrics that need masks are
refused all in one line before the model is loaded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from PIL import Image

from xaiopt.study.estimate import SKIP_ENV

XAIOPT = [sys.executable, "-m", "xaiopt"]

MODEL = '''
import torch
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes=3):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        y = y + F.relu(self.b2(self.c2(y)))
        return self.fc(y.mean((2, 3)))


def build(num_classes=3, weights=None):
    torch.manual_seed(0)
    return Net(num_classes)
'''


def _user_folder(root: Path) -> Path:
    (root / "mynets").mkdir(parents=True)
    (root / "mynets" / "__init__.py").write_text("")
    (root / "mynets" / "cnn.py").write_text(MODEL)
    rng = np.random.default_rng(0)
    for label in ("cat", "dog", "fox"):
        (root / "photos" / label).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "photos" / label / f"{i}.jpg")
    return root


def _xaiopt(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", SKIP_ENV)}
    return subprocess.run([*XAIOPT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _lines(err: str) -> list[str]:
    return [line for line in err.strip().splitlines() if not line.startswith("xaiopt: [")]


@pytest.fixture()
def user(tmp_path):
    root = _user_folder(tmp_path / "project")
    study = {"name": "mine", "n_trials": 1, "model": {"name": "module:mynets.cnn:build", "num_classes": 3},
             "data": {"name": "imagefolder:photos", "n_samples": 9, "image_size": 32},
             "space": {"layer_groups": 2}}
    (root / "study.yaml").write_text(yaml.safe_dump(study))
    return root


def test_own_model_and_photos_from_the_project_folder(user):
    dry = _xaiopt(user, "study", "create", "study.yaml", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert sorted(p.name for p in user.iterdir()) == ["mynets", "photos", "study.yaml"]  # nothing written
    run = _xaiopt(user, "run", "study.yaml", "--no-progress")
    assert run.returncode == 0, run.stderr
    for out in (dry.stderr, run.stderr):
        lines = _lines(out)
        choice = [line for line in lines if "has no object masks" in line]
        assert len(choice) == 1, out
        assert "relevance_rank_accuracy, relevance_mass_accuracy" in choice[0]
        assert "photos_masks/" in choice[0] and "docs/datasets.md" in choice[0]
        cost = [line for line in lines if line.startswith("xaiopt: one trial (")]
        assert len(cost) == 1, out
        for part in ("attribution", "sparseness", "region_perturbation", "avg_sensitivity", "random_logit"):
            assert f"{part} " in cost[0]
        assert "the budget of 1 trials: about" in cost[0]
    # the first worker scored the reference explanations once, before its trial; the cost line says what it took
    assert "(and, once, the reference explanations: " in next(
        line for line in _lines(run.stderr) if line.startswith("xaiopt: one trial ("))
    study = optuna.load_study(study_name="mine", storage=f"sqlite:///{user / 'xaiopt.db'}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 1 and len(done[0].values) == 4
    assert study.metric_names == ["sparseness", "region_perturbation", "avg_sensitivity", "random_logit"]


def test_module_resolves_from_the_study_files_folder_too(user, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cfg = yaml.safe_load((user / "study.yaml").read_text())
    cfg["data"]["name"] = f"imagefolder:{user / 'photos'}"
    (user / "study.yaml").write_text(yaml.safe_dump(cfg))
    dry = _xaiopt(elsewhere, "study", "create", str(user / "study.yaml"), "--dry-run")
    assert dry.returncode == 0, dry.stderr


def test_a_module_that_is_nowhere_is_one_line(user, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cfg = yaml.safe_load((user / "study.yaml").read_text())
    cfg["model"]["name"] = "module:nosuchpkg.nets:build"
    (elsewhere / "s.yaml").write_text(yaml.safe_dump(cfg))
    result = _xaiopt(elsewhere, "study", "create", "s.yaml")
    assert result.returncode == 2
    lines = _lines(result.stderr)
    assert len(lines) == 1 and "cannot import 'nosuchpkg.nets'" in lines[0] and "PYTHONPATH" in lines[0], lines
    assert not (elsewhere / "xaiopt.db").exists()


def test_configured_mask_metrics_are_all_named_in_one_line_before_the_model_loads(user):
    cfg = yaml.safe_load((user / "study.yaml").read_text())
    # a model that cannot even be imported: the metrics' needs are checked first
    cfg["model"]["name"] = "module:mynets.missing:build"
    cfg["metrics"] = ["sparseness", "relevance_rank_accuracy", "pointing_game"]
    (user / "study.yaml").write_text(yaml.safe_dump(cfg))
    result = _xaiopt(user, "study", "create", "study.yaml")
    assert result.returncode == 2
    lines = _lines(result.stderr)
    assert len(lines) == 1, lines
    assert "relevance_rank_accuracy, pointing_game need object masks" in lines[0]
    assert "keeping sparseness" in lines[0] and "photos_masks/" in lines[0]
    assert not (user / "xaiopt.db").exists()
