"""data.holdout end to end: the search never shows a held-out sample to the model; validate scores them."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch

import xaiopt.objective.benchmark as benchmark_module
from xaiopt.analysis.validate import VALIDATION_ATTR
from xaiopt.cli import main
from xaiopt.config import load_config, parse_config
from xaiopt.errors import TrialFailed
from xaiopt.objective.benchmark import _CACHE
from xaiopt.study import create_study, load_study, optimize, per_sample_scores
from xaiopt.study.manage import SPLIT_ATTR
from xaiopt.zoo import load_dataset, load_model
from xaiopt.zoo.evaldata import EvalData
from xaiopt.zoo.split import holdout_split

ROOT = Path(__file__).resolve().parents[2]

SMALL = {
    "name": "held", "device": "cpu", "seed": 0,
    "data": {"n_samples": 12, "holdout": 4},
    "space": {"layer_groups": 1, "rules": ["gamma", "epsilon"], "gamma": [0.25, 1.0], "epsilon": [1e-6],
              "first_layer": ["zbox"], "canonize": [True, False]},
    "metrics": ["sparseness", "relevance_mass_accuracy", {"name": "region_perturbation",
                                                          "params": {"patch_size": 16, "regions": 4}}],
    "sampler": {"name": "random"},
    "baselines": ["epsilon_gamma_box"],
    "runtime": {"heatmaps": 0},
}


class Seen:
    """Every input row the model (and its canonized twin, a copy) is given, checked for poison."""

    rows = 0
    poisoned = 0


def _watch(module, inputs):
    x = inputs[0]
    if x.dim() == 4 and x.shape[1] == 3:  # an image batch entering the network's first convolution
        Seen.rows += int(x.shape[0])
        Seen.poisoned += int(torch.isnan(x.flatten(1)).any(1).sum())


@pytest.fixture
def poisoned(monkeypatch):
    """The held-out images are NaN: any pass that shows one to the model is counted."""
    _CACHE.clear()
    Seen.rows = Seen.poisoned = 0

    def model_with_a_watch(*args, **kwargs):
        model = load_model(*args, **kwargs)
        # on every convolution: deep copies (the canonized twin, the metrics' randomized copies) keep it
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.register_forward_pre_hook(_watch)
        return model

    def data_with_poison(*args, **kwargs):
        data = load_dataset(*args, **kwargs)
        split = holdout_split(data.y, SMALL["data"]["holdout"], seed=SMALL["data"].get("seed", 0))
        x = data.x.clone()
        x[list(split.holdout)] = float("nan")
        return EvalData(x=x, y=data.y, masks=data.masks, low=data.low, high=data.high,
                        num_classes=data.num_classes, class_names=data.class_names)

    monkeypatch.setattr(benchmark_module, "load_model", model_with_a_watch)
    monkeypatch.setattr(benchmark_module, "load_dataset", data_with_poison)
    yield
    _CACHE.clear()


def test_no_held_out_sample_reaches_the_model_during_the_search(tmp_path, poisoned):
    storage = f"sqlite:///{tmp_path / 'h.db'}"
    loaded = create_study(parse_config(SMALL), storage=storage)
    split = loaded.study.user_attrs[SPLIT_ATTR]
    assert len(split["holdout"]) == 4 and len(split["search"]) == 8
    assert set(split["holdout"]).isdisjoint(split["search"])
    loaded = optimize("held", storage=storage, n_trials=4, device="cpu")
    complete = [t for t in loaded.study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4
    # every score stands on the 8 search samples, and the model saw many rows, none of them held out
    assert all(len(per_sample_scores(t)["sparseness"]) == 8 for t in complete)
    # (the count is a sanity check that the watch saw the passes: kept LRP forwards and kept
    # occlusion scores spare some of them, 125 rows here, 150+ without)
    assert Seen.rows > 100 and Seen.poisoned == 0, (Seen.rows, Seen.poisoned)
    # the detector works: validation does show the (poisoned) held-out samples to the model
    from xaiopt.study.holdout import holdout_evaluator

    evaluate = holdout_evaluator(load_study("held", storage=storage), device="cpu")
    with pytest.raises(TrialFailed, match="NaN"):
        evaluate(complete[0].system_attrs["xaiopt:explainer"])
    assert Seen.poisoned > 0


def test_quickstart_with_a_holdout_validates_end_to_end(tmp_path, capsys):
    _CACHE.clear()
    cfg = load_config(ROOT / "studies" / "quickstart.yaml")
    cfg = cfg.model_copy(update={"n_trials": 9, "data": cfg.data.model_copy(update={"holdout": 0.3}),
                                 "runtime": cfg.runtime.model_copy(update={"heatmaps": 0})})
    storage = f"sqlite:///{tmp_path / 'q.db'}"
    created = create_study(cfg, storage=storage)
    assert created.study.user_attrs["xaiopt:evaluation_batch"]["samples"] == 22  # 32 - round(0.3 * 32)
    optimize("quickstart", storage=storage, n_trials=9, device="cpu")
    code = main(["study", "validate", "quickstart", "--storage", storage, "--top", "2", "--format", "json"])
    out = capsys.readouterr().out
    assert code == 0
    v = json.loads(out)
    assert v["search_samples"] == 22 and v["holdout_samples"] == 10
    assert set(v["optimism"]) == {m.name for m in cfg.metrics}
    roles = [r for s in v["settings"] for r in s["roles"]]
    assert roles[0] == "recommended" and sum(r.startswith("baseline ") for r in roles) >= 5
    assert v["verdict"].startswith("The recommendation ")
    study = optuna.load_study(study_name="quickstart", storage=storage)
    assert study.user_attrs[VALIDATION_ATTR]["recommended"] == v["recommended"]
    assert len(study.trials) == 9  # validation adds no trial
    # the held-out values are the same metric code on the other samples: recomputing one agrees
    rec = v["settings"][0]
    assert all(abs(rec["holdout"][m]) < 1e6 for m in rec["holdout"])
    code = main(["study", "validate", "quickstart", "--storage", storage])
    text = capsys.readouterr().out
    assert code == 0 and "held-out" in text and "Kendall tau-b" in text
    # the report and the recommendation show the held-out figures once they exist
    from xaiopt.analysis import recommend
    from xaiopt.report import write_report

    loaded = load_study("quickstart", storage=storage)
    assert v["verdict"] in " ".join(recommend(loaded).text().split())
    page = write_report(loaded, tmp_path / "report", images=0, dashboard=False).read_text()
    assert "Does it hold on images the search never saw? (10 held-out samples, 22 search samples)" in page
    assert v["verdict"].split(":")[0] in page


def test_validate_without_a_holdout_is_one_line(tmp_path, capsys):
    _CACHE.clear()
    cfg = dict(SMALL, data={"n_samples": 6}, baselines=[])
    storage = f"sqlite:///{tmp_path / 'n.db'}"
    create_study(parse_config(cfg), storage=storage)
    optimize("held", storage=storage, n_trials=1, device="cpu")
    code = main(["study", "validate", "held", "--storage", storage])
    err = capsys.readouterr().err
    assert code == 2 and "data.holdout" in err and len(err.strip().splitlines()) == 1


def test_a_worker_whose_split_differs_from_the_studys_refuses(tmp_path, capsys):
    _CACHE.clear()
    storage = f"sqlite:///{tmp_path / 'm.db'}"
    loaded = create_study(parse_config(dict(SMALL, baselines=[])), storage=storage)
    stored = loaded.study.user_attrs[SPLIT_ATTR]
    # as if this machine's dataset gave other samples: the recorded split no longer matches
    loaded.study.set_user_attr(SPLIT_ATTR, dict(stored, holdout=stored["search"][:4], search=stored["holdout"]))
    code = main(["study", "optimize", "held", "--storage", storage, "--n-trials", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "the study was created with" in err and len(err.strip().splitlines()) == 1
    assert optuna.load_study(study_name="held", storage=storage).trials == []
