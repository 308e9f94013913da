"""The spine through the command line: create, optimize, pareto (JSON), plot, list, delete."""

from __future__ import annotations

import json
import sqlite3

import optuna
import pytest
import yaml

from xaiopt.cli import main

SMALL = {
    "name": "e2e",
    "seed": 1,
    "device": "cpu",
    "model": {"name": "benchmark:vgg"},
    "data": {"name": "benchmark", "n_samples": 8},
    "space": {
        "canonize": [True, False],
        "first_layer": ["zbox", "flat"],
        "layer_groups": 2,
        "rules": ["gamma", "epsilon", "zplus"],
        "gamma": [0.1, 0.25, 1.0],
        "epsilon": {"low": 1e-6, "high": 1.0, "log": True},
    },
    "metrics": [
        "sparseness",
        {"name": "region_perturbation", "params": {"patch_size": 8, "regions": 8}},
        "relevance_rank_accuracy",
        "relevance_mass_accuracy",
        {"name": "avg_sensitivity", "params": {"nr_samples": 2}},
        "random_logit",
    ],
    "sampler": {"name": "random"},
}


@pytest.fixture
def study_file(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    return path


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_create_optimize_pareto_plot(tmp_path, study_file, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    storage = f"sqlite:///{tmp_path / 'e2e.db'}"
    code, out, err = run(capsys, "study", "create", str(study_file), "--storage", storage)
    assert code == 0, err
    assert "created study 'e2e'" in out

    code, out, err = run(capsys, "study", "optimize", "e2e", "--n-trials", "3", "--storage", storage,
                         "--no-progress")
    assert code == 0, err
    assert "3 complete" in err

    code, out, err = run(capsys, "study", "pareto", "e2e", "--format", "json", "--storage", storage)
    assert code == 0, err
    doc = json.loads(out)
    names = [m if isinstance(m, str) else m["name"] for m in SMALL["metrics"]]
    assert doc["study"] == "e2e" and doc["front_on"] == names
    assert [(m["name"], m["direction"]) for m in doc["metrics"]] == list(zip(names, ["maximize"] * 4 + ["minimize"] * 2))
    assert [m["category"] for m in doc["metrics"]] == ["complexity", "faithfulness", "localization", "localization",
                                                       "robustness", "randomization"]
    rows = doc["trials"]
    assert 1 <= len(rows) <= 3
    for r in rows:
        assert set(r["values"]) == {m if isinstance(m, str) else m["name"] for m in SMALL["metrics"]}
        assert 0.0 <= r["values"]["relevance_mass_accuracy"] <= 1.0
        assert 0.0 <= r["values"]["sparseness"] <= 1.0
        assert r["explainer"]["groups"].keys() == {"conv1", "conv2", "classifier"}
        assert r["explainer"]["first_layer"] in ("zbox", "flat")

    # the database is a plain Optuna study with metric names and directions set
    study = optuna.load_study(study_name="e2e", storage=storage)
    assert study.metric_names == [r for r in rows[0]["values"]]
    assert [d.name for d in study.directions] == ["MAXIMIZE"] * 4 + ["MINIMIZE"] * 2
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 3
    t = complete[0]
    # the dashboard's columns are flat and short; the full record is in system attrs
    assert isinstance(t.user_attrs["seconds"], float) and isinstance(t.user_attrs["explainer"], str)
    assert all(isinstance(v, (str, int, float, bool)) and len(str(v)) <= 120 for v in t.user_attrs.values())
    assert set(t.system_attrs["xaiopt:seconds"]) >= {"attribution", "total", "metric:sparseness"}
    assert t.system_attrs["xaiopt:seconds"]["total"] == pytest.approx(t.user_attrs["seconds"], abs=1e-3)
    assert t.system_attrs["xaiopt:explainer"]["canonize"] in (True, False)
    assert t.system_attrs["xaiopt:heatmap"]
    art_dir = tmp_path / "xaiopt-artifacts"
    pngs = list(art_dir.rglob("*"))
    assert any(p.is_file() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    # the Pareto rows are exactly the non-dominated complete trials
    assert sorted(r["number"] for r in rows) == sorted(
        t.number for t in study.best_trials if "duplicate_of" not in t.user_attrs)

    out_html = tmp_path / "front.html"
    code, out, err = run(capsys, "study", "plot", "e2e", "--out", str(out_html), "--storage", storage)
    assert code == 0, err
    html = out_html.read_text()
    assert "plotly" in html and "Pareto-optimal" in html and "region_perturbation" in html

    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = run(capsys, "study", "pareto", "e2e", "--storage", storage)
    assert code == 0 and "sparseness ↑" in out and "avg_sensitivity ↓" in out
    assert max(map(len, out.splitlines())) <= 200
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = run(capsys, "study", "pareto", "e2e", "--storage", storage)
    assert code == 0 and max(map(len, out.splitlines())) <= 80
    assert [line for line in out.splitlines() if line.startswith("not shown in 80 columns") and "--columns" in line]

    code, out, err = run(capsys, "study", "pareto", "e2e", "--format", "csv", "--storage", storage)
    assert out.splitlines()[0].startswith("trial,sparseness (max),region_perturbation (max)")

    code, out, err = run(capsys, "study", "export", "e2e", "--out", str(tmp_path / "best.py"), "--storage", storage)
    assert code == 0, err
    from xaiopt.analysis import recommend
    from xaiopt.study import load_study

    best = recommend(load_study("e2e", storage=storage)).best.number  # the default is the recommended setting
    assert f"study 'e2e', trial {best}.\n" in (tmp_path / "best.py").read_text()
    assert f"trial {best} (" in err and "recommended" in err

    code, out, err = run(capsys, "study", "list", "--storage", storage)
    assert code == 0 and out.startswith("e2e\t3 complete")

    code, out, err = run(capsys, "study", "delete", "e2e", "--storage", storage)
    assert code == 0
    assert optuna.get_all_study_names(storage) == []


def one_line_error(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("xaiopt: error: ")
    return lines[0]


def test_user_mistakes_are_one_line_exit_2(tmp_path, study_file, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    storage = f"sqlite:///{tmp_path / 'm.db'}"
    assert "no such file" in one_line_error(capsys, "study", "create", str(tmp_path / "nope.yaml"))
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("space: [unclosed\n")
    assert "not valid YAML at line" in one_line_error(capsys, "study", "create", str(bad_yaml))
    for patch, expected in [
        ({"space": {**SMALL["space"], "rules": ["gamma", "lrp0"]}}, "unknown rule 'lrp0'"),
        ({"metrics": ["sparseness", "accuracy"]}, "unknown metric 'accuracy'"),
        ({"sampler": "cmaes"}, "unknown sampler 'cmaes'"),
        ({"space": {**SMALL["space"], "gamma": []}}, "space.gamma.choices: empty list"),
        ({"metrics": [{"name": "region_perturbation", "params": {"patch": 3}}]}, "region_perturbation"),
        ({"model": {"name": "torchvision:not_a_model"}}, "not_a_model"),
    ]:
        path = tmp_path / "m.yaml"
        path.write_text(yaml.safe_dump({**SMALL, **patch}))
        assert expected in one_line_error(capsys, "study", "create", str(path), "--storage", storage)
    # nothing half-written: none of the failed creates left a database behind
    assert not (tmp_path / "m.db").exists()

    line = one_line_error(capsys, "study", "list", "--storage", "postgresql+psycopg://u:secret@127.0.0.1:1/x")
    assert "secret" not in line and "cannot open" in line
    assert "--threads must be >= 1, got 0" in one_line_error(capsys, "worker", "--study", "x", "--threads", "0")
    assert "not a database URL" in one_line_error(capsys, "study", "list", "--storage", "nonsense")
    assert "does not exist" in one_line_error(capsys, "study", "pareto", "x", "--storage", storage)

    code = main(["study", "create", str(study_file), "--storage", storage])
    assert code == 0
    capsys.readouterr()
    assert "already exists" in one_line_error(capsys, "study", "create", str(study_file), "--storage", storage)
    assert "--resume" in one_line_error(capsys, "run", str(study_file), "--storage", storage)
    assert "study 'other' does not exist" in one_line_error(capsys, "study", "optimize", "other", "--n-trials", "1",
                                                            "--storage", storage)
    assert "give --n-trials" in one_line_error(capsys, "study", "optimize", "e2e", "--storage", storage)
    line = one_line_error(capsys, "study", "optimize", "e2e", "--n-trials", "1", "--device", "cuda:3",
                          "--storage", storage)
    assert "CUDA is not available" in line or "does not exist" in line
    assert "invalid choice" in one_line_error(capsys, "study", "pareto", "e2e", "--format", "xml",
                                              "--storage", storage)
    # an Optuna study made by another tool has no xaiopt config
    optuna.create_study(study_name="plain", storage=storage)
    assert "not created by xaiopt" in one_line_error(capsys, "study", "pareto", "plain", "--storage", storage)
    with sqlite3.connect(tmp_path / "m.db") as con:
        assert con.execute("select count(*) from trials").fetchone()[0] == 0
