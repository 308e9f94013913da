"""Read commands (`study list / pareto / recommend / export / plot`) never import torch, zennit or the
metric implementations: what they print comes from the storage alone. Checked in a fresh interpreter by
the modules it has loaded once the command has run, and against the same commands in this process
(which has everything loaded) for equal output."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from xaiopt.config import parse_config
from xaiopt.study import create_study, load_study, optimize
from xaiopt.study.manage import CATEGORIES_ATTR

CFG = {
    "name": "light",
    "seed": 3,
    "device": "cpu",
    "data": {"n_samples": 4},
    "space": {"layer_groups": 2, "rules": ["zplus", "epsilon", "gamma"], "gamma": [0.25, 1.0],
              "epsilon": [1e-6, 0.1], "first_layer": ["zbox", "flat"], "canonize": [True, False]},
    "metrics": ["sparseness", {"name": "region_perturbation", "params": {"patch_size": 16, "regions": 2}},
               "avg_sensitivity"],
    "baselines": ["epsilon_plus_flat"],
    "sampler": {"name": "random"},
    "runtime": {"heatmaps": 0},
}
HEAVY = ("torch", "zennit", "torchvision", "quantus", "xaiopt.metrics.faithfulness", "xaiopt.space.composite")

# runs one command in a fresh interpreter, then prints its exit code, stdout and the heavy modules loaded
_PROBE = """
import contextlib, io, json, sys
from xaiopt.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = main(sys.argv[1:])
heavy = [m for m in {heavy!r} if m in sys.modules]
print(json.dumps({{"code": code, "out": out.getvalue(), "heavy": heavy}}))
"""


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('light') / 'l.db'}"
    create_study(parse_config(CFG), storage=url)
    optimize("light", storage=url, n_trials=5, device="cpu")
    return url


def fresh(*argv: str) -> dict:
    done = subprocess.run([sys.executable, "-c", _PROBE.format(heavy=HEAVY), *argv],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def here(capsys, *argv: str) -> tuple[int, str]:
    from xaiopt.cli import main

    code = main(list(argv))
    return code, capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ("study", "list"),
    ("study", "pareto", "light"),
    ("study", "pareto", "light", "--format", "json"),
    ("study", "recommend", "light"),
    ("study", "recommend", "light", "--format", "json", "--prefer", "faithfulness=2"),
    ("study", "table", "light"),
    ("study", "table", "light", "--format", "latex"),
], ids=lambda a: "-".join(a[1:]))
def test_read_commands_load_no_torch_and_print_what_a_full_process_prints(storage, capsys, argv):
    got = fresh(*argv, "--storage", storage)
    assert got["heavy"] == [], f"{' '.join(argv)} imported {got['heavy']}"
    code, out = here(capsys, *argv, "--storage", storage)
    assert (got["code"], got["out"]) == (code, out) and code == 0


@pytest.mark.parametrize("suffix", ["json", "py"])
def test_export_loads_no_torch_and_writes_the_same_file(storage, tmp_path, capsys, suffix):
    light, full = tmp_path / f"fresh_one.{suffix}", tmp_path / f"loaded_one.{suffix}"
    got = fresh("study", "export", "light", "--trial", "2", "--out", str(light), "--storage", storage)
    assert got["code"] == 0 and got["heavy"] == []
    assert here(capsys, "study", "export", "light", "--trial", "2", "--out", str(full), "--storage", storage)[0] == 0
    # the module name in the usage line is the file's own
    assert light.read_text().replace("fresh_one", "loaded_one") == full.read_text()


def test_plot_loads_plotly_but_no_torch(storage, tmp_path):
    got = fresh("study", "plot", "light", "--out", str(tmp_path / "p.html"), "--storage", storage)
    assert got["code"] == 0 and got["heavy"] == []
    assert (tmp_path / "p.html").stat().st_size > 10_000


def test_categories_are_recorded_at_creation_and_read_from_the_registry_for_older_studies(storage):
    loaded = load_study("light", storage=storage)
    assert loaded.study.user_attrs[CATEGORIES_ATTR] == {
        "sparseness": "complexity", "region_perturbation": "faithfulness", "avg_sensitivity": "robustness"}
    assert loaded.metric_categories == ["complexity", "faithfulness", "robustness"]
    loaded.study.set_user_attr(CATEGORIES_ATTR, None)  # a study made before the record existed
    try:
        assert load_study("light", storage=storage).metric_categories == ["complexity", "faithfulness", "robustness"]
    finally:
        loaded.study.set_user_attr(CATEGORIES_ATTR, {"sparseness": "complexity", "region_perturbation": "faithfulness",
                                                     "avg_sensitivity": "robustness"})


def test_a_package_export_wins_over_its_submodule_of_the_same_name():
    import importlib

    importlib.import_module("xaiopt.analysis.recommend")  # the submodule, imported first
    from xaiopt.analysis import recommend

    assert callable(recommend) and recommend.__module__ == "xaiopt.analysis.recommend"


def test_a_plugin_metric_cannot_take_a_builtin_name_before_the_builtins_are_loaded():
    code = ("from xaiopt.metrics.registry import register_metric\n"
            "try:\n"
            "    register_metric('sparseness', category='complexity', direction='maximize')(lambda ctx: ctx)\n"
            "except ValueError as e:\n"
            "    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "registered twice" in done.stdout, done.stdout + done.stderr


def test_report_says_what_it_is_doing_unless_told_not_to(storage, tmp_path, capsys):
    from xaiopt.cli import main

    assert main(["study", "report", "light", "--out", str(tmp_path / "r"), "--images", "1", "--storage", storage]) == 0
    lines = capsys.readouterr().err.splitlines()
    steps = [ln.split("] ", 1)[1] for ln in lines if ln.startswith("xaiopt: [")]
    assert steps[0] == "report of study 'light' (5 trials): the recommendation (paired bootstrap over the samples)"
    for expected in ("figures: Pareto front", "parameter importance per metric", "heatmaps of 1 images",
                     "the recommendation as the study's optuna-dashboard note"):
        assert any(s.startswith(expected) for s in steps), (expected, steps)
    assert lines[-1] == f"wrote {tmp_path / 'r' / 'index.html'}"
    seconds = [float(ln.split("[", 1)[1].split("s]", 1)[0]) for ln in lines if ln.startswith("xaiopt: [")]
    assert seconds == sorted(seconds)
    assert main(["study", "report", "light", "--out", str(tmp_path / "q"), "--images", "0", "--no-progress",
                 "--storage", storage]) == 0
    assert capsys.readouterr().err.splitlines() == [f"wrote {tmp_path / 'q' / 'index.html'}"]
