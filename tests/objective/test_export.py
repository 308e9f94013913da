"""The zennit export reproduces the trial's attributions with zennit alone (plus the canonizer)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from xaiopt.config import parse_config
from xaiopt.errors import ConfigError
from xaiopt.objective import Objective
from xaiopt.space import ExplainerSpec
from xaiopt.study import create_study, load_study, optimize
from xaiopt.study.export import export_composite

CFG = {
    "name": "exp",
    "device": "cpu",
    "data": {"n_samples": 4},
    "space": {"layer_groups": 2, "rules": ["zplus", "epsilon", "gamma", "alpha2beta1"], "gamma": [0.25, 1.0],
              "epsilon": [1e-6, 0.1], "first_layer": ["zbox", "flat", "same"], "canonize": [True, False]},
    "metrics": ["sparseness"],
    "sampler": {"name": "random"},
    "runtime": {"heatmaps": 0},
}


def _import(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_exported_composite_gives_the_trials_attributions(tmp_path):
    storage = f"sqlite:///{tmp_path / 'e.db'}"
    cfg = parse_config(CFG)
    create_study(cfg, storage=storage)
    optimize("exp", storage=storage, n_trials=4, device="cpu")
    loaded = load_study("exp", storage=storage)
    objective = Objective(cfg, device=torch.device("cpu"))
    bench = objective.bench
    checked = 0
    for t in loaded.study.trials:
        path = export_composite(loaded, trial=t.number, out=tmp_path / f"trial{t.number}.py")
        module = _import(path)
        spec = ExplainerSpec.from_dict(t.user_attrs["explainer"])
        _, _, ours = objective.evaluate(spec)
        model = bench.model  # the exported composite canonizes the plain model itself when asked
        with module.make_composite().context(model) as modified:
            x = bench.x.clone().requires_grad_(True)
            out = modified(x)
            seed = torch.zeros_like(out).scatter_(1, bench.y[:, None], out.gather(1, bench.y[:, None]).detach())
            (rel,) = torch.autograd.grad(out, x, grad_outputs=seed)
        torch.testing.assert_close(rel.sum(1, keepdim=True), ours, rtol=1e-4, atol=1e-5)
        checked += 1
    assert checked == 4
    # the model is back to its own function after the context
    with torch.no_grad():
        torch.testing.assert_close(bench.model(bench.x), bench.logits)


def test_export_errors(tmp_path):
    storage = f"sqlite:///{tmp_path / 'e.db'}"
    create_study(parse_config(CFG), storage=storage)
    loaded = load_study("exp", storage=storage)
    from xaiopt.errors import StudyError

    with pytest.raises(StudyError, match="has no complete trial"):
        export_composite(loaded, trial=None, out=tmp_path / "x.py")
    with pytest.raises(ConfigError, match="trial 7 of study 'exp' is not complete"):
        export_composite(loaded, trial=7, out=tmp_path / "x.py")
