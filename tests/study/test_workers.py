"""Several stateless workers on one PostgreSQL study: the budget is a total, killed trials come back."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import optuna
import pytest
from optuna.trial import TrialState

from xaiopt.cli import main
from xaiopt.study.worker import OVER_BUDGET_ATTR

from .conftest import PASSWORD, small_config, spawn

pytestmark = pytest.mark.postgres


def _create(capsys, cfg_path, url, *extra):
    code = main(["study", "create", str(cfg_path), "--storage", url, *extra])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert PASSWORD not in out + err
    return out


def test_three_workers_share_one_budget(tmp_path, pg_url, capsys):
    cfg = small_config(tmp_path, name="three")
    out = _create(capsys, cfg, pg_url, "--n-trials", "9", "--artifacts", str(tmp_path / "art"),
                  "--baseline", "epsilon_plus", "--baseline", "epsilon_plus_flat:plain")
    assert "baselines: epsilon_plus:canonized, epsilon_plus:plain, epsilon_plus_flat:plain" in out

    logs = [tmp_path / f"worker{i}.log" for i in range(3)]
    procs = [spawn("worker", "--storage", pg_url, "--study", "three", "--until-done", log=log) for log in logs]
    for p in procs:
        assert p.wait(timeout=150) == 0
    text = "".join(log.read_text() for log in logs)
    assert PASSWORD not in text
    assert "Traceback" not in text, text

    study = optuna.load_study(study_name="three", storage=pg_url)
    trials = study.get_trials(deepcopy=False)
    kept = [t for t in trials if not t.user_attrs.get(OVER_BUDGET_ATTR)]
    assert [t.state for t in kept] == [TrialState.COMPLETE] * 9
    # over-budget trials (a lost race) are pruned and marked, never complete
    assert all(t.state == TrialState.PRUNED for t in trials if t.user_attrs.get(OVER_BUDGET_ATTR))
    baselines = Counter(t.user_attrs["baseline"] for t in trials if "baseline" in t.user_attrs)
    assert baselines == {"epsilon_plus:canonized": 1, "epsilon_plus:plain": 1, "epsilon_plus_flat:plain": 1}
    eps_plus = next(t for t in trials if t.user_attrs.get("baseline") == "epsilon_plus:canonized")
    assert eps_plus.params["canonize"] is True and eps_plus.params["first_layer"] == "same"
    assert eps_plus.params["conv1.rule"] == eps_plus.params["conv2.rule"] == "zplus"
    assert eps_plus.params["classifier.rule"] == "epsilon" and eps_plus.params["classifier.epsilon"] == 1e-6
    # every kept trial names the worker that ran it, and the three workers' counts add up to the
    # budget. Whether all three got work is a matter of start-up time with trials this fast (one
    # up seconds before the others may take all nine), so the spread is not asserted here:
    # test_load.py's 150 trials by six workers, long enough for all to start, assert that each worked.
    per_worker = Counter(t.user_attrs["worker"] for t in kept)
    assert sum(per_worker.values()) == 9 and all(per_worker), per_worker

    # a late worker finds nothing to do and leaves at once
    code = main(["worker", "--storage", pg_url, "--study", "three", "--no-progress"])
    _, err = capsys.readouterr()
    assert code == 0
    assert "0 trial(s) here" in err and "9 complete" in err


def test_killed_worker_trial_is_retried(tmp_path, pg_url, capsys):
    cfg = small_config(tmp_path, name="kill", data={"name": "benchmark", "n_samples": 8})
    _create(capsys, cfg, pg_url, "--n-trials", "4", "--artifacts", str(tmp_path / "art"))
    victim = spawn("worker", "--storage", pg_url, "--study", "kill", log=tmp_path / "victim.log")
    study = optuna.load_study(study_name="kill", storage=pg_url)
    deadline = time.monotonic() + 90
    killed = None
    while time.monotonic() < deadline and killed is None:
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get("worker", "").endswith(f":{victim.pid}"):
                os.kill(victim.pid, signal.SIGKILL)
                killed = t.number
                break
        time.sleep(0.05)
    victim.wait(timeout=10)
    assert killed is not None, (tmp_path / "victim.log").read_text()
    assert victim.returncode == -signal.SIGKILL

    rescuer = spawn("worker", "--storage", pg_url, "--study", "kill", "--until-done", log=tmp_path / "rescuer.log")
    assert rescuer.wait(timeout=120) == 0, (tmp_path / "rescuer.log").read_text()

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4
    original = next(t for t in trials if t.number == killed)
    assert original.state == TrialState.FAIL   # failed as stale by the rescuer
    retry = [t for t in complete if t.system_attrs.get("failed_trial") == killed]
    assert len(retry) == 1
    # the retry keeps what the killed trial had already chosen (it may have died mid-suggestion)
    assert original.params.items() <= retry[0].params.items()
    assert retry[0].user_attrs["worker"].endswith(f":{rescuer.pid}")
    assert PASSWORD not in (tmp_path / "rescuer.log").read_text()
