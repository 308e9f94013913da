"""The Python export says what it needs, and needs no more: a plain setting's module runs with only
torch and zennit (checked in a subprocess where importing xaiopt fails) and gives the trial's
attributions; a canonized setting's module says in its docstring that it needs xaiopt, and without
xaiopt it fails on import, naming it."""

from __future__ import annotations

import subprocess
import sys

import optuna
import pytest
import torch
import yaml

import xaiopt
from xaiopt.cli import main
from xaiopt.zoo import load_dataset

TINY = '''
import torch
from torch import nn


def build(num_classes=4, weights=None):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, num_classes))
'''

# runs the exported module with xaiopt unimportable: what a user without xaiopt installed has
RUNNER = '''
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "xaiopt" or name.startswith("xaiopt."):
            raise ImportError(f"No module named {name!r} (blocked)")
sys.meta_path.insert(0, Block())
import torch
from zennit.attribution import Gradient
import tiny
from exported import make_composite
model = tiny.build(4).eval()
model.load_state_dict(torch.load("weights.pt"))
x, y = torch.load("batch.pt")
with Gradient(model=model, composite=make_composite()) as attributor:
    _, relevance = attributor(x, torch.eye(4)[y])
torch.save(relevance.sum(1, keepdim=True), "relevance.pt")
'''


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("export-requires")
    (root / "tiny.py").write_text(TINY)
    cfg = {"name": "req", "seed": 1, "device": "cpu", "model": {"name": "module:tiny:build", "num_classes": 4},
           "data": {"n_samples": 4}, "metrics": ["sparseness"], "sampler": {"name": "random"},
           "space": {"layer_groups": 2, "canonize": [True, False], "rules": ["epsilon", "gamma"],
                     "gamma": [0.25], "epsilon": [0.1], "first_layer": ["zbox", "flat"]},
           "runtime": {"heatmaps": 0}}
    (root / "s.yaml").write_text(yaml.safe_dump(cfg))
    storage = f"sqlite:///{root / 's.db'}"
    sys.path.insert(0, str(root))
    try:
        assert main(["study", "create", str(root / "s.yaml"), "--storage", storage]) == 0
        assert main(["study", "optimize", "req", "--n-trials", "6", "--storage", storage, "--no-progress"]) == 0
    finally:
        sys.path.remove(str(root))
    return root, storage


def _trial(storage, canonize):
    trials = optuna.load_study(study_name="req", storage=storage).trials
    return next(t.number for t in trials if t.state.name == "COMPLETE" and t.params.get("canonize") is canonize)


def _export(root, storage, trial, capsys):
    out = root / "exported.py"
    assert main(["study", "export", "req", "--trial", str(trial), "--out", str(out), "--storage", storage]) == 0
    assert main(["study", "export", "req", "--trial", str(trial), "--out", str(root / "exported.json"),
                 "--storage", storage]) == 0
    capsys.readouterr()
    return out


def _run_without_xaiopt(root):
    (root / "run.py").write_text(RUNNER)
    return subprocess.run([sys.executable, "run.py"], cwd=root, capture_output=True, text=True, timeout=300)


def test_a_plain_setting_runs_with_only_torch_and_zennit(study, capsys):
    root, storage = study
    module = _export(root, storage, _trial(storage, False), capsys)
    assert "Requires: torch and zennit\n" in module.read_text()
    sys.path.insert(0, str(root))
    try:
        from xaiopt.zoo import load_model

        model = load_model("module:tiny:build", num_classes=4).eval()  # the study's model, seeded
    finally:
        sys.path.remove(str(root))
    data = load_dataset("benchmark", n=4, seed=3)
    torch.save(model.state_dict(), root / "weights.pt")
    torch.save((data.x, data.y), root / "batch.pt")
    result = _run_without_xaiopt(root)
    assert result.returncode == 0, result.stderr
    got = torch.load(root / "relevance.pt")
    from zennit.attribution import Gradient

    composite = xaiopt.load_composite(str(root / "exported.json"), model)
    with Gradient(model=model, composite=composite) as attributor:
        _, expected = attributor(data.x, torch.eye(4)[data.y])
    expected = expected.sum(1, keepdim=True)
    assert got.abs().sum() > 0
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6 * expected.abs().max().item())


def test_a_canonized_setting_says_it_needs_xaiopt(study, capsys):
    root, storage = study
    module = _export(root, storage, _trial(storage, True), capsys)
    text = module.read_text()
    assert "Requires: torch, zennit and xaiopt (its GraphCanonizer canonizes the model" in text
    (root / "weights.pt").write_bytes(b"")  # never reached: the import fails first
    result = _run_without_xaiopt(root)
    assert result.returncode != 0 and "No module named 'xaiopt" in result.stderr
