"""Plugins: a custom metric registered by a module the config lists works in every process, two
PostgreSQL workers included; a missing plugin is one line and exit 2."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from xaiopt.cli import main
from xaiopt.objective.attrs import spec_dict
from xaiopt.study import load_study, per_sample_scores
from xaiopt.study.attribute import attribute_settings

from .conftest import small_config, spawn

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


@pytest.fixture
def plugin_path(monkeypatch):
    """The plugin folder on this process's path and on every subprocess's PYTHONPATH."""
    monkeypatch.syspath_prepend(str(PLUGINS))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")]))
    # the module stays imported afterwards: its metric is registered once per process


def _positive_share(attributions: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """The plugin's metric recomputed by hand in float64."""
    pos = np.clip(attributions.reshape(len(attributions), -1).astype(np.float64), 0, None)
    inside = (pos * masks.reshape(len(masks), -1)).sum(1)
    return inside / np.maximum(pos.sum(1), 1e-12)


@pytest.mark.postgres
def test_a_plugin_metric_runs_on_two_postgres_workers(tmp_path, pg_url, plugin_path, capsys):
    cfg = small_config(tmp_path, name="plug", plugins=["lab_metrics"], metrics=["sparseness", "lab_positive_share"],
                       runtime={"heartbeat_interval": 1, "heatmaps": 0})
    assert main(["study", "create", str(cfg), "--storage", pg_url, "--n-trials", "6"]) == 0
    capsys.readouterr()
    logs = [tmp_path / f"w{i}.log" for i in range(2)]
    # each worker runs at most half of the budget, so both compute the plugin's metric however their
    # start-up times differ (with --until-done the first one up could take all six)
    procs = [spawn("worker", "--storage", pg_url, "--study", "plug", "--n-trials", "3", "--threads", "1", log=log)
             for log in logs]
    for p in procs:
        assert p.wait(timeout=300) == 0
    text = "".join(log.read_text() for log in logs)
    assert "Traceback" not in text, text
    study = optuna.load_study(study_name="plug", storage=pg_url)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 6 and study.metric_names == ["sparseness", "lab_positive_share"]
    by_worker = [t.user_attrs["worker"] for t in done]
    assert sorted(by_worker.count(w) for w in set(by_worker)) == [3, 3]  # both computed the custom metric
    # the stored custom scores are the plugin's formula on the trial's attributions, recomputed here
    loaded = load_study("plug", storage=pg_url)
    t = done[0]
    got = attribute_settings(loaded, [spec_dict(t)], images=4, device="cpu")
    want = _positive_share(got.attributions[0].numpy(), got.masks.numpy())
    np.testing.assert_allclose(per_sample_scores(t)["lab_positive_share"], want, rtol=1e-5, atol=1e-6)
    assert t.values[1] == pytest.approx(float(want.mean()), rel=1e-5)
    assert all(0.0 <= t.values[1] <= 1.0 for t in done)
    # a read command in this process sees the plugin too
    assert main(["study", "recommend", "plug", "--storage", pg_url]) == 0
    assert "lab_positive_share" in capsys.readouterr().out


def test_a_missing_plugin_is_one_line_and_nothing_is_created(tmp_path, capsys):
    cfg = small_config(tmp_path, name="noplug", plugins=["lab_metrics_not_installed"])
    storage = f"sqlite:///{tmp_path / 'p.db'}"
    assert main(["study", "create", str(cfg), "--storage", storage]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "plugins: module 'lab_metrics_not_installed' cannot be imported" in err and "PYTHONPATH" in err
    assert not (tmp_path / "p.db").exists()


def test_a_plugin_that_raises_is_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "broken_plugin.py").write_text("raise RuntimeError('bad weights path\\nsecond line')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = small_config(tmp_path, name="broken", plugins=["broken_plugin"])
    assert main(["study", "create", str(cfg), "--storage", f"sqlite:///{tmp_path / 'b.db'}"]) == 2
    err = capsys.readouterr().err
    assert err.strip().endswith("plugins: importing 'broken_plugin' failed: RuntimeError: bad weights path")
    assert len(err.strip().splitlines()) == 1


def test_an_empty_config_file_is_refused(tmp_path, capsys):
    empty = tmp_path / "empty.yaml"
    empty.write_text("\n# nothing here\n")
    storage = f"sqlite:///{tmp_path / 'e.db'}"
    assert main(["study", "create", str(empty), "--storage", storage]) == 2
    err = capsys.readouterr().err
    assert "the file is empty" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "e.db").exists()
