"""Every script of examples/ runs as a user would run it and checks its own result; the result it
prints is checked here again, against values recomputed in this process where they can be."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, *args: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                          timeout=600, env=env, cwd=EXAMPLES.parent, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    start = proc.stdout.index("{\n")  # the JSON result is the script's last output
    return json.loads(proc.stdout[start:])


def test_examples_are_documented():
    readme = (EXAMPLES / "README.md").read_text()
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert scripts == ["composite_in_zennit.py", "own_model.py", "plugin_metric.py", "pruning_objective.py"]
    for name in scripts:
        assert f"python examples/{name}" in readme


def test_plugin_metric_example():
    result = run_example("plugin_metric.py")
    assert result["worker_trials"] == 2
    assert [c["trial"] for c in result["checked"]] == [0, 3]
    assert all(0.1 <= c["lab_concentration"] <= 1.0 for c in result["checked"])  # top 10 % hold >= 10 %
    assert result["front"]


def test_pruning_objective_example():
    result = run_example("pruning_objective.py", "--trials", "4")
    assert result["trials"] == 4
    values, again = result["values"], result["recomputed"]
    assert set(values) == {"accuracy_drop", "logit_drop", "sparseness"}
    assert again["accuracy_drop"] == pytest.approx(values["accuracy_drop"], abs=1e-9)
    # 32 samples: an accuracy drop is a multiple of 1/32
    assert round(values["accuracy_drop"] * 32) == pytest.approx(values["accuracy_drop"] * 32, abs=1e-6)
    assert again["most_relevant_logit_drop"] > again["logit_drop"]
    assert result["cached_forwards_used"] > 0  # relevance_at from kept forwards, no lrp_cache_mb: 0 needed


def test_composite_in_zennit_example():
    result = run_example("composite_in_zennit.py")
    assert result["explainer"].startswith("canonize=yes")
    assert max(result["max_abs_difference"].values()) < 1e-5


def test_own_model_example():
    result = run_example("own_model.py")
    assert result["data"] == "python:own_model" and result["model"].endswith("own_model")
    assert result["accuracy"] >= 0.9
    assert result["relevance_mass_accuracy_by_hand"] == pytest.approx(result["values"]["relevance_mass_accuracy"],
                                                                      rel=1e-4)
    line = result["worker_elsewhere"]
    assert "not registered in this process" in line and "plugins:" in line
