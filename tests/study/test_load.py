"""Load: six workers share a 150-trial budget on PostgreSQL; every trial completes once, none is lost."""

from __future__ import annotations

import time
from collections import Counter

import optuna
import pytest
from optuna.trial import TrialState

from xaiopt.cli import main
from xaiopt.study.worker import OVER_BUDGET_ATTR

from .conftest import small_config, spawn

pytestmark = pytest.mark.postgres

WORKERS, TRIALS = 6, 150
# the cheapest real trial: 2 images, one metric, no heatmaps; a continuous epsilon, so settings rarely repeat
TINY = dict(name="load", data={"name": "benchmark", "n_samples": 2}, metrics=["sparseness"],
            space={"canonize": [True, False], "first_layer": ["same"], "layer_groups": 1, "rules": ["epsilon"],
                   "epsilon": {"low": 1e-6, "high": 1.0, "log": True}},
            runtime={"heartbeat_interval": 2, "heatmaps": 0})


def test_six_workers_complete_150_trials_once(tmp_path, pg_url, capsys):
    cfg = small_config(tmp_path, **TINY)
    assert main(["study", "create", str(cfg), "--storage", pg_url, "--n-trials", str(TRIALS)]) == 0
    capsys.readouterr()
    logs = [tmp_path / f"w{i}.log" for i in range(WORKERS)]
    t0 = time.perf_counter()
    procs = [spawn("worker", "--storage", pg_url, "--study", "load", "--until-done", "--threads", "1", log=log)
             for log in logs]
    for p in procs:
        assert p.wait(timeout=600) == 0, "".join(log.read_text() for log in logs)
    seconds = time.perf_counter() - t0
    text = "".join(log.read_text() for log in logs)
    assert "Traceback" not in text
    trials = optuna.load_study(study_name="load", storage=pg_url).get_trials(deepcopy=False)
    kept = [t for t in trials if not t.user_attrs.get(OVER_BUDGET_ATTR)]
    assert Counter(t.state for t in kept) == {TrialState.COMPLETE: TRIALS}  # none lost, none failed
    assert len({t.number for t in kept}) == TRIALS and all(t.values for t in kept)
    assert all(t.state == TrialState.PRUNED for t in trials if t.user_attrs.get(OVER_BUDGET_ATTR))
    per_worker = Counter(t.user_attrs["worker"] for t in kept)
    assert len(per_worker) == WORKERS, per_worker
    print(f"load: {TRIALS} trials by {WORKERS} workers in {seconds:.1f} s ({TRIALS / seconds:.2f} trials/s, "
          f"{len(trials) - len(kept)} over-budget races pruned)")
