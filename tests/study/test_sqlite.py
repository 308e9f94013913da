"""SQLite: one worker per file (a second is refused), orphans of a dead worker are re-queued."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from xaiopt.cli import main
from xaiopt.study.storage import sqlite_worker_lock

from .conftest import small_config


def test_second_worker_on_sqlite_is_refused(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'one.db'}"
    assert main(["study", "create", str(small_config(tmp_path, name="one", n_trials=2)), "--storage", url]) == 0
    capsys.readouterr()
    with sqlite_worker_lock(url):  # a live worker holds the file
        code = main(["worker", "--study", "one", "--storage", url])
        _, err = capsys.readouterr()
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "is already used by a worker" in err and "use PostgreSQL" in err
    # once it is gone the next worker runs
    assert main(["worker", "--study", "one", "--storage", url, "--no-progress"]) == 0
    assert "2 complete" in capsys.readouterr().err


def test_orphaned_running_trial_is_requeued(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'orphan.db'}"
    cfg = small_config(tmp_path, name="orphan", n_trials=3)
    assert main(["study", "create", str(cfg), "--storage", url]) == 0
    study = optuna.load_study(study_name="orphan", storage=url)
    orphan = study.ask({"canonize": optuna.distributions.CategoricalDistribution([True, False])})
    assert main(["study", "optimize", "orphan", "--storage", url, "--no-progress"]) == 0
    capsys.readouterr()
    trials = study.get_trials(deepcopy=False)
    assert trials[orphan.number].state == TrialState.FAIL
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 3   # the orphan's slot went to its retry, not lost and not double-counted
    retry = [t for t in complete if t.system_attrs.get("failed_trial") == orphan.number]
    assert len(retry) == 1 and retry[0].params["canonize"] == orphan.params["canonize"]
