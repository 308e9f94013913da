"""The Python export reproduces the trial's attributions with zennit alone (plus the canonizer)."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from export_cases import SETTINGS, SPACE

from xaiopt.config import parse_config
from xaiopt.errors import ConfigError, StudyError
from xaiopt.objective import Objective
from xaiopt.objective.attrs import spec_dict
from xaiopt.space import ExplainerSpec
from xaiopt.study import create_study, load_study, optimize
from xaiopt.study.export import export_composite

CFG = {
    "name": "exp",
    "device": "cpu",
    "data": {"n_samples": 4},
    "space": SPACE,
    "metrics": ["sparseness"],
    "sampler": {"name": "random"},
    "runtime": {"heatmaps": 0},
}


def _import(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export-py")
    storage = f"sqlite:///{tmp / 'e.db'}"
    cfg = parse_config(CFG)
    created = create_study(cfg, storage=storage)
    for params in SETTINGS:
        created.study.enqueue_trial(params)
    optimize("exp", storage=storage, n_trials=len(SETTINGS), device="cpu")
    return cfg, load_study("exp", storage=storage)


def test_exported_module_gives_the_trials_attributions(study, tmp_path):
    cfg, loaded = study
    objective = Objective(cfg, device=torch.device("cpu"))
    bench = objective.bench
    trials = sorted(loaded.study.trials, key=lambda t: t.number)
    assert [t.params for t in trials] == SETTINGS  # the enqueued settings ran as written
    for t in trials:
        path = export_composite(loaded, trial=t.number, out=tmp_path / f"trial{t.number}.py")
        module = _import(path)
        spec = ExplainerSpec.from_dict(spec_dict(t))
        _, _, ours = objective.evaluate(spec)
        model = bench.model  # the exported composite canonizes the plain model itself when asked
        with module.make_composite().context(model) as modified:
            x = bench.x.clone().requires_grad_(True)
            out = modified(x)
            seed = torch.zeros_like(out).scatter_(1, bench.y[:, None], out.gather(1, bench.y[:, None]).detach())
            (rel,) = torch.autograd.grad(out, x, grad_outputs=seed)
        assert ours.abs().max() > 0
        torch.testing.assert_close(rel.sum(1, keepdim=True), ours, rtol=1e-4, atol=1e-5)
        # the model is back to its own function after the context
        with torch.no_grad():
            torch.testing.assert_close(bench.model(bench.x), bench.logits, rtol=0, atol=0)


def test_export_errors(tmp_path):
    storage = f"sqlite:///{tmp_path / 'e.db'}"
    create_study(parse_config(CFG), storage=storage)
    loaded = load_study("exp", storage=storage)
    with pytest.raises(StudyError, match="has no complete trial"):
        export_composite(loaded, trial=None, out=tmp_path / "x.py")
    with pytest.raises(ConfigError, match="trial 7 of study 'exp' is not complete"):
        export_composite(loaded, trial=7, out=tmp_path / "x.py")
    with pytest.raises(ConfigError, match=r"no export suffix \(valid: \.py \(python\), \.json \(json\)\)"):
        export_composite(loaded, trial=0, out=tmp_path / "x.txt")
    with pytest.raises(ConfigError, match="--format json does not match --out 'x.py'"):
        export_composite(loaded, trial=0, out=tmp_path / "x.py", fmt="json")
    # nothing written on an error (the SQLite lock file beside the database is create's, kept like a worker's)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".worker-lock")) == ["e.db"]
