"""Studies on model code written outside torch.nn: create refuses layers no rule can reach, says when
the twin is not fully canonized, and runs trials on conv subclasses with their own forward."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import yaml

import xaiopt
from tests.canonize import third_party as tp
from tests.canonize.helpers import randomize_batch_norms
from xaiopt.cli import main


@pytest.fixture
def models(monkeypatch: pytest.MonkeyPatch) -> str:
    module = types.ModuleType("xaiopt_study_third_party")
    for name in ("PortedEfficientNet", "ComputedWeightNet", "FunctionalNet", "StrayNorm"):
        cls = getattr(tp, name)
        setattr(module, name, lambda cls=cls: randomize_batch_norms(cls(num_classes=4)))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module.__name__


def _config(tmp_path: Path, model: str, canonize=(True, False)) -> Path:
    cfg = {
        "name": "third-party", "seed": 0, "device": "cpu",
        "model": {"name": model},
        "data": {"name": "benchmark", "n_samples": 4},
        "space": {"canonize": list(canonize), "first_layer": ["flat"], "layer_groups": 2, "rules": ["epsilon"],
                  "epsilon": [0.1]},
        "metrics": ["sparseness", {"name": "region_perturbation", "params": {"patch_size": 16, "regions": 2}}],
        "sampler": {"name": "random"},
        "runtime": {"heatmaps": 0},
    }
    path = tmp_path / "third_party.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _create(tmp_path: Path, config: Path, capsys) -> tuple[int, str, str]:
    code = main(["study", "create", str(config), "--storage", f"sqlite:///{tmp_path / 's.db'}"])
    out, err = capsys.readouterr()
    return code, out, err


def test_conv_subclasses_with_their_own_forward_get_groups_and_trials(tmp_path, models, capsys):
    config = _config(tmp_path, f"module:{models}:PortedEfficientNet")
    code, out, err = _create(tmp_path, config, capsys)
    assert code == 0, err
    storage = f"sqlite:///{tmp_path / 's.db'}"
    loaded = xaiopt.optimize("third-party", storage=storage, n_trials=2)
    groups = loaded.study.user_attrs["xaiopt:layer_groups"]
    assert len(groups["conv1"]) + len(groups["conv2"]) == 12 and groups["classifier"] == ["fc"]
    trials = loaded.study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert {t.params["canonize"] for t in trials} <= {True, False}
    assert loaded.study.user_attrs["xaiopt:canonization"]["batch_norms_after"] == 0
    assert "not fully canonized" not in err


def test_a_layer_no_rule_can_reach_fails_create_with_one_line(tmp_path, models, capsys):
    code, out, err = _create(tmp_path, _config(tmp_path, f"module:{models}:ComputedWeightNet"), capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "outside any Conv/Linear module" in err and "<forward of ComputedWeightNet>: conv2d" in err
    assert not (tmp_path / "s.db").exists()


def test_plain_model_unreachable_but_twin_fine_points_to_canonized_only(tmp_path, models, capsys):
    code, out, err = _create(tmp_path, _config(tmp_path, f"module:{models}:FunctionalNet"), capsys)
    assert code == 2 and "the model runs 3 conv/linear calls" in err
    assert "space.canonize: [true] only" in err
    code, out, err = _create(tmp_path, _config(tmp_path, f"module:{models}:FunctionalNet", canonize=[True]), capsys)
    assert code == 0, err
    loaded = xaiopt.optimize("third-party", storage=f"sqlite:///{tmp_path / 's.db'}", n_trials=1)
    assert loaded.study.get_trials()[0].state.name == "COMPLETE"
    groups = loaded.study.user_attrs["xaiopt:layer_groups"]
    assert groups["conv1"] == ["conv1.canonizer_conv", "blur.canonizer_conv"]
    assert groups["conv2"] == ["conv2.canonizer_conv"]


def test_a_twin_that_still_computes_a_batch_norm_is_said_at_create(tmp_path, models, capsys):
    code, out, err = _create(tmp_path, _config(tmp_path, f"module:{models}:StrayNorm"), capsys)
    assert code == 0, err
    warning = [line for line in err.splitlines() if "not fully canonized" in line]
    assert len(warning) == 1 and "1 of 1 still computed" in warning[0] and "identity" in warning[0]
