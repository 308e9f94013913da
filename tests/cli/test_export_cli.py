"""`xaiopt study export`: the recommended trial by default (said on stderr), formats by suffix, one-line
errors with exit 2 and nothing written."""

from __future__ import annotations

import json
import os
import stat

import pytest

import xaiopt
from xaiopt.cli import main
from xaiopt.config import parse_config
from xaiopt.study import create_study, load_study, optimize

CFG = {
    "name": "cliexp",
    "seed": 5,
    "device": "cpu",
    "data": {"n_samples": 4},
    "space": {"layer_groups": 2, "rules": ["zplus", "epsilon", "gamma"], "gamma": [0.25, 1.0],
              "epsilon": [1e-6, 0.1], "first_layer": ["zbox", "flat", "same"], "canonize": [True, False]},
    "metrics": ["sparseness", {"name": "region_perturbation", "params": {"patch_size": 16, "regions": 2}}],
    "sampler": {"name": "random"},
    "runtime": {"heatmaps": 0},
}


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('export-cli') / 'e.db'}"
    create_study(parse_config(CFG), storage=url)
    optimize("cliexp", storage=url, n_trials=5, device="cpu")
    return url


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_export_defaults_to_the_recommended_trial(storage, tmp_path, capsys):
    rec = xaiopt.recommend(load_study("cliexp", storage=storage))
    best = rec.best.number
    code, _, err = run(capsys, "study", "export", "cliexp", "--out", str(tmp_path / "f.json"), "--storage", storage)
    assert code == 0, err
    line = err.strip()
    assert "\n" not in line
    assert line.startswith(f"wrote {tmp_path / 'f.json'}: trial {best} (")
    assert f"the recommended setting: rank 1 of {rec.settings} by equal category weights" in line
    doc = json.loads((tmp_path / "f.json").read_text())
    assert doc["format"] == "xaiopt.composite" and doc["trial"] == best
    # --recommended says the same; --trial writes the trial asked for, here as a Python module
    code, _, err = run(capsys, "study", "export", "cliexp", "--recommended", "--out", str(tmp_path / "g.json"),
                       "--storage", storage)
    assert code == 0 and f": trial {best} (" in err
    assert json.loads((tmp_path / "g.json").read_text()) == doc
    other = next(t.number for t in load_study("cliexp", storage=storage).study.trials if t.number != best)
    code, _, err = run(capsys, "study", "export", "cliexp", "--trial", str(other), "--out", str(tmp_path / "m.py"),
                       "--storage", storage)
    assert code == 0 and err.strip() == f"wrote {tmp_path / 'm.py'}: trial {other}, as asked"
    assert f"trial {other}." in (tmp_path / "m.py").read_text()
    code, _, err = run(capsys, "study", "export", "cliexp", "--trial", str(other), "--format", "json",
                       "--out", str(tmp_path / "n.json"), "--storage", storage)
    assert code == 0 and json.loads((tmp_path / "n.json").read_text())["trial"] == other
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json", "g.json", "m.py", "n.json"]
    # the files get the mode open() would give them, not the temporary file's 0600
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "f.json").stat().st_mode) == 0o666 & ~mask


SUFFIXES = r"\(valid: .py \(python\), .json \(json\)\)"


@pytest.mark.parametrize(("args", "message"), [
    (["--trial", "99", "--out", "f.json"],
     r"--trial: trial 99 of study 'cliexp' is not complete \(complete: 0, 1, 2, 3, 4\)"),
    (["--out", "f.txt"], r"--out: 'f.txt' has no export suffix " + SUFFIXES),
    (["--trial", "0", "--out", "f.txt"], r"--out: 'f.txt' has no export suffix " + SUFFIXES),
    (["--trial", "0", "--prefer", "faithfulness=2", "--out", "f.json"],
     r"--prefer chooses the recommended setting; it has no meaning with --trial"),
    (["--trial", "0", "--format", "python", "--out", "f.json"],
     r"--format python does not match --out 'f.json' \(a json file; valid pairs: .py \(python\), .json \(json\)\)"),
    (["--trial", "0", "--out", "nodir/f.json"], r"--out: directory nodir does not exist"),
])
def test_export_errors_exit_2_and_write_nothing(storage, tmp_path, capsys, monkeypatch, args, message):
    import re

    monkeypatch.chdir(tmp_path)
    (tmp_path / "f.json").write_text("kept")  # an earlier file of that name stays as it was
    code, out, err = run(capsys, "study", "export", "cliexp", *args, "--storage", storage)
    assert code == 2
    assert out == "" and err.count("\n") == 1
    assert re.fullmatch(r"xaiopt: error: " + message + r"\n", err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]
    assert (tmp_path / "f.json").read_text() == "kept"


def test_a_study_name_that_is_code_stays_text_in_the_exported_module(tmp_path, capsys):
    """A study name (shared on PostgreSQL, anyone may choose it) holding a docstring's end, quotes
    and a backslash (control characters are refused at create): importing the export runs none of it, and ``__doc__``
    reads the name back; the command xaiopt suggests for it is quoted for the shell."""
    import importlib.util
    import shlex

    marker = tmp_path / "ran"
    name = f'x"""; import pathlib; pathlib.Path({str(marker)!r}).write_text("1"); """ \\ end'
    cfg = {**CFG, "name": name, "data": {"n_samples": 2}, "metrics": ["sparseness"], "baselines": []}
    url = f"sqlite:///{tmp_path / 'n.db'}"
    create_study(parse_config(cfg), storage=url)
    optimize(name, storage=url, n_trials=1, device="cpu")
    code, _, err = run(capsys, "study", "export", name, "--out", str(tmp_path / "named.py"), "--storage", url)
    assert code == 0, err
    spec = importlib.util.spec_from_file_location("named", tmp_path / "named.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert not marker.exists()
    assert module.__doc__.splitlines()[0] == f"zennit composite exported by xaiopt: study {name!r}, trial 0."
    assert module.make_composite() is not None
    # the suggested `xaiopt study delete ...` is one shell word for the name (error lines show
    # control characters escaped, so this name has none)
    shell = "a'b; touch $(pwd)/x \"c\""
    create_study(parse_config({**cfg, "name": shell}), storage=url)
    code, _, err = run(capsys, "study", "create", _write(tmp_path, {**cfg, "name": shell}), "--storage", url)
    assert code == 2
    suggested = err.split("`")[1]
    assert shlex.split(suggested) == ["xaiopt", "study", "delete", shell]


def _write(tmp_path, cfg) -> str:
    import yaml

    path = tmp_path / "again.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)
