"""Per-class studies on the embedded benchmark: created from one config, split like the all-class study,
compared on each class's held-out samples from the command line."""

from __future__ import annotations

import json

import optuna
import yaml

from xaiopt.cli import main
from xaiopt.study.manage import SPLIT_ATTR

CFG = {
    "name": "pc", "device": "cpu", "seed": 0,
    "data": {"n_samples": 24, "holdout": 0.5},
    "space": {"layer_groups": 1, "rules": ["gamma", "epsilon"], "gamma": [0.25, 1.0], "epsilon": [1e-6],
              "first_layer": ["zbox"], "canonize": [True, False]},
    "metrics": ["sparseness", "relevance_mass_accuracy"],
    "sampler": {"name": "random"},
    "runtime": {"heatmaps": 0},
}


def test_per_class_studies_share_the_split_and_compare(tmp_path, capsys):
    path = tmp_path / "pc.yaml"
    path.write_text(yaml.safe_dump(CFG))
    storage = f"sqlite:///{tmp_path / 'pc.db'}"
    assert main(["study", "create", str(path), "--storage", storage]) == 0
    assert main(["study", "create", str(path), "--storage", storage, "--per-class", "circle,square"]) == 0
    out = capsys.readouterr().out
    assert "pc.circle, pc.square" in out and "xaiopt study compare pc" in out
    names = optuna.get_all_study_names(storage)
    assert sorted(names) == ["pc", "pc.circle", "pc.square"]
    base = optuna.load_study(study_name="pc", storage=storage)
    circle = optuna.load_study(study_name="pc.circle", storage=storage)
    # the same split of the same 24 samples: 12 searched, 12 held out; a class study searches its 3
    assert base.user_attrs[SPLIT_ATTR] == circle.user_attrs[SPLIT_ATTR]
    assert base.user_attrs["xaiopt:evaluation_batch"]["samples"] == 12
    assert circle.user_attrs["xaiopt:evaluation_batch"]["samples"] == 3
    assert circle.user_attrs["xaiopt:evaluation_batch"]["classes"] == 1
    for name in ("pc", "pc.circle", "pc.square"):
        assert main(["study", "optimize", name, "--storage", storage, "--n-trials", "3", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["study", "compare", "pc", "--storage", storage, "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [r["cls"] for r in result["rows"]] == ["circle", "square"]
    assert all(r["holdout_samples"] == 3 for r in result["rows"])
    assert all(r["verdict"] in ("same setting", "indistinguishable", "per-class better", "all-class better")
               for r in result["rows"])
    assert "2 classes" in result["summary"]
    # a row's scores are the class study's held-out scores of the two settings
    for r in result["rows"]:
        if r["verdict"] == "same setting":
            assert r["per_class_score"] == r["all_class_score"] and r["difference"] is None
        else:
            assert r["difference"]["difference"] == __import__("pytest").approx(
                r["per_class_score"] - r["all_class_score"], abs=1e-9)


def test_per_class_mistakes_are_one_line(tmp_path, capsys):
    path = tmp_path / "pc.yaml"
    path.write_text(yaml.safe_dump(CFG))
    storage = f"sqlite:///{tmp_path / 'pc.db'}"
    assert main(["study", "create", str(path), "--storage", storage, "--per-class", "hexagon"]) == 2
    err = capsys.readouterr().err
    assert "hexagon" in err and "circle" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "pc.db").exists() or optuna.get_all_study_names(storage) == []
    assert main(["study", "create", str(path), "--storage", storage]) == 0
    assert main(["study", "compare", "pc", "--storage", storage]) == 2
    assert "no per-class studies" in capsys.readouterr().err


def test_a_failed_per_class_create_leaves_no_study_and_no_file_it_made(tmp_path, capsys, monkeypatch):
    from xaiopt.errors import StudyError
    from xaiopt.study import per_class

    real, calls = per_class.create_study, []

    def second_fails(*args, **kwargs):
        calls.append(kwargs["name"])
        if len(calls) == 2:
            raise StudyError("storage: disk full (injected)")
        return real(*args, **kwargs)

    monkeypatch.setattr(per_class, "create_study", second_fails)
    path = tmp_path / "pc.yaml"
    path.write_text(yaml.safe_dump(CFG))
    storage = f"sqlite:///{tmp_path / 'new.db'}"
    assert main(["study", "create", str(path), "--storage", storage, "--per-class", "circle,square"]) == 2
    assert capsys.readouterr().err.strip() == "xaiopt: error: storage: disk full (injected)"
    assert calls == ["pc.circle", "pc.square"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pc.yaml"]  # the file the first class made is gone
    # a file that was there before keeps what it held, and only that
    kept = f"sqlite:///{tmp_path / 'kept.db'}"
    monkeypatch.setattr(per_class, "create_study", real)
    assert main(["study", "create", str(path), "--storage", kept]) == 0
    monkeypatch.setattr(per_class, "create_study", second_fails)
    calls.clear()
    assert main(["study", "create", str(path), "--storage", kept, "--per-class", "circle,square"]) == 2
    assert optuna.get_all_study_names(kept) == ["pc"]
