"""A custom metric and a custom rule used from a YAML study through plugins, in this process and in a
second worker.

``plugin/study.yaml`` lists ``plugins: [lab_concentration, lab_rules]``; the plugin modules register the
metric ``lab_concentration`` and the rule ``lab_alphabeta`` (alpha-beta with ``beta = alpha - 1``) when
the config is read, before it is validated, so the YAML can name the rule for the ``conv1`` group and
search its ``alpha`` (``space.params.alpha``). Two trials run here, the other two in an
``xaiopt worker`` subprocess that knows the study only by its name and storage (the plugin folder is on
its ``PYTHONPATH``). The script then recomputes the metric by hand (numpy, float64) on the attributions
of a trial from each process and checks them against the stored per-sample scores.

Run: ``python examples/plugin_metric.py`` (about 15 s on a laptop CPU).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PLUGIN_DIR = HERE / "plugin"
sys.path.insert(0, str(PLUGIN_DIR))  # this process imports the plugin when it reads the config

import xaiopt
from xaiopt.objective.attrs import spec_dict
from xaiopt.study import per_sample_scores
from xaiopt.study.attribute import attribute_settings


def concentration(attributions: np.ndarray, top: float) -> np.ndarray:
    """The plugin's metric, recomputed independently: sort each heatmap's positive relevance."""
    pos = np.clip(attributions.reshape(len(attributions), -1).astype(np.float64), 0, None)
    k = max(1, round(top * pos.shape[1]))
    ranked = -np.sort(-pos, axis=1)
    return ranked[:, :k].sum(1) / np.maximum(pos.sum(1), 1e-12)


def main() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        storage = f"sqlite:///{Path(tmp) / 'plugin.db'}"
        cfg = xaiopt.load_config(PLUGIN_DIR / "study.yaml")
        xaiopt.create_study(cfg, storage=storage)
        xaiopt.optimize(cfg.name, storage=storage, n_trials=2, device="cpu")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGIN_DIR), os.environ.get("PYTHONPATH", "")])}
        worker = subprocess.run([sys.executable, "-m", "xaiopt", "worker", "--storage", storage, "--study", cfg.name,
                                 "--device", "cpu", "--no-progress"], env=env, capture_output=True, text=True,
                                timeout=300, check=False)
        assert worker.returncode == 0, worker.stderr
        loaded = xaiopt.load_study(cfg.name, storage=storage)
        trials = [t for t in loaded.study.trials if t.values is not None]
        assert len(trials) == 4 and loaded.study.metric_names == ["sparseness", "lab_concentration"]
        # every trial searched the plugin rule's parameter on conv1, and its explainer names the rule
        alphas = [t.params["conv1.alpha"] for t in trials]
        assert set(alphas) <= {1.5, 2.0, 3.0}, alphas
        assert all(spec_dict(t)["groups"]["conv1"] == {"rule": "lab_alphabeta", "value": t.params["conv1.alpha"]}
                   for t in trials)
        n = cfg.data.n_samples
        checked = []
        for t in (trials[0], trials[-1]):  # one trial of this process, one of the worker's
            got = attribute_settings(loaded, [spec_dict(t)], images=n, device="cpu")
            want = concentration(got.attributions[0].numpy(), top=0.1)
            np.testing.assert_allclose(per_sample_scores(t)["lab_concentration"], want, rtol=1e-5, atol=1e-6)
            assert abs(t.values[1] - float(want.mean())) < 1e-5
            checked.append({"trial": t.number, "lab_concentration": t.values[1],
                            "conv1.alpha": t.params["conv1.alpha"]})
        front = xaiopt.pareto_front(loaded)
    result = {"checked": checked, "front": [t.number for t in front],
              "worker_trials": sum(1 for t in trials if t.user_attrs.get("worker") != trials[0].user_attrs["worker"])}
    assert result["worker_trials"] == 2, result
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
