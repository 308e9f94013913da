"""The quickstart study file (README's main job) stays valid: it creates, enqueues its baselines, runs."""

from pathlib import Path

import optuna

from xaiopt.config import load_config
from xaiopt.study import create_study, optimize, pareto_rows

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_creates_and_runs_its_baselines(tmp_path):
    cfg = load_config(ROOT / "studies" / "quickstart.yaml")
    storage = f"sqlite:///{tmp_path / 'q.db'}"
    create_study(cfg, storage=storage, artifact_dir=tmp_path / "art")
    study = optuna.load_study(study_name="quickstart", storage=storage)
    assert study.metric_names == [m.name for m in cfg.metrics]
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert sorted(t.user_attrs["baseline"] for t in waiting) == sorted(
        f"{b}:{v}" for b in ("epsilon_gamma_box", "epsilon_plus_flat", "alpha2beta1") for v in ("canonized", "plain"))

    loaded = optimize("quickstart", storage=storage, n_trials=2, device="cpu")
    done = loaded.study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert [t.user_attrs["baseline"] for t in done] == ["epsilon_gamma_box:canonized", "epsilon_gamma_box:plain"]
    assert done[0].user_attrs["explainer"] == (
        "canonize=yes first=zbox conv1=gamma(0.25) conv2=gamma(0.25) conv3=gamma(0.25) classifier=epsilon(1e-06)")
    # canonization changes the explanation of the same function
    assert done[0].values != done[1].values
    assert {r["baseline"] for r in pareto_rows(loaded)} <= {t.user_attrs["baseline"] for t in done}
