"""Database outages: every connection of the study's PostgreSQL database dropped mid-trial and new ones
refused for 20 s; the workers wait it out and every trial of the budget completes exactly once."""

from __future__ import annotations

import time

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from xaiopt.cli import main
from xaiopt.study.worker import OVER_BUDGET_ATTR

from .conftest import PASSWORD, _admin, small_config, spawn

pytestmark = pytest.mark.postgres

OUTAGE_SECONDS = 20


def _outage(db: str, seconds: float) -> None:
    """Refuse new connections to ``db``, drop every existing one, wait, then allow connections again."""
    admin = _admin()
    try:
        admin.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                      "AND pid <> pg_backend_pid()", (db,))
        time.sleep(seconds)
    finally:
        admin.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')
        admin.close()


def test_workers_wait_out_a_database_outage_and_record_every_trial_once(tmp_path, pg_url, capsys):
    cfg = small_config(tmp_path, name="outage", data={"name": "benchmark", "n_samples": 16},
                       runtime={"heartbeat_interval": 1, "heatmaps": 0, "storage_retry_seconds": 120})
    assert main(["study", "create", str(cfg), "--storage", pg_url, "--n-trials", "8"]) == 0
    capsys.readouterr()
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    procs = [spawn("worker", "--storage", pg_url, "--study", "outage", "--until-done", "--threads", "1", log=log)
             for log in logs]
    # wait for a trial in flight, then take the database away under it
    study = optuna.load_study(study_name="outage", storage=pg_url)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        trials = study.get_trials(deepcopy=False)
        if any(t.state == TrialState.COMPLETE for t in trials) and any(t.state == TrialState.RUNNING for t in trials):
            break
        time.sleep(0.1)
    else:
        pytest.fail("no trial was running: " + "".join(log.read_text() for log in logs))
    _outage(make_url(pg_url).database, OUTAGE_SECONDS)
    for p in procs:
        assert p.wait(timeout=300) == 0, "".join(log.read_text() for log in logs)
    texts = [log.read_text() for log in logs]
    for text in texts:
        assert "Traceback" not in text, text
        assert PASSWORD not in text
        # one line when the outage starts, one when it ends
        assert text.count("xaiopt: the database is unreachable") == 1, text
        assert text.count("xaiopt: the database is reachable again after") == 1, text
    study = optuna.load_study(study_name="outage", storage=pg_url)
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get(OVER_BUDGET_ATTR)]
    # every trial of the budget completed exactly once: none failed as stale and ran again
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 8, [(t.number, t.state) for t in trials]
    assert not [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.FAIL]
    # each completed by one of the two workers; how a loaded scheduler spread them is not a guarantee
    assert len({t.user_attrs["worker"] for t in trials}) in (1, 2)


def test_a_worker_past_its_retry_time_exits_in_one_line_and_its_trial_is_rerun(tmp_path, pg_url, capsys):
    # trials of a few seconds (sensitivity draws): one is in flight, beating, when the database goes
    cfg = small_config(tmp_path, name="gone", data={"name": "benchmark", "n_samples": 64},
                       metrics=["sparseness", {"name": "avg_sensitivity", "params": {"nr_samples": 10}}],
                       runtime={"heartbeat_interval": 1, "heatmaps": 0, "storage_retry_seconds": 3})
    assert main(["study", "create", str(cfg), "--storage", pg_url, "--n-trials", "4"]) == 0
    capsys.readouterr()
    log = tmp_path / "victim.log"
    victim = spawn("worker", "--storage", pg_url, "--study", "gone", "--until-done", "--threads", "1", log=log)
    study = optuna.load_study(study_name="gone", storage=pg_url)
    # a trial that has been running (and beating) for a while: Optuna can call a trial stale only
    # once it has recorded a heartbeat
    deadline = time.monotonic() + 120
    seen: dict[int, float] = {}
    while time.monotonic() < deadline:
        now = time.monotonic()
        running = [t.number for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
        if any(now - seen.setdefault(n, now) >= 1.5 for n in running):
            break
        time.sleep(0.05)
    _outage(make_url(pg_url).database, 12)
    assert victim.wait(timeout=60) == 75  # EX_TEMPFAIL: the outage outlasted runtime.storage_retry_seconds
    lines = [line for line in log.read_text().splitlines() if not line.startswith("[I ")]
    assert "Traceback" not in log.read_text()
    assert lines[-1].startswith("xaiopt: error: storage: the database stayed unreachable for ")
    assert "runtime.storage_retry_seconds = 3" in lines[-1] and PASSWORD not in log.read_text()
    # another worker finds the abandoned trial stale, re-queues it and completes the budget
    rescuer = spawn("worker", "--storage", pg_url, "--study", "gone", "--until-done", "--threads", "1",
                    log=tmp_path / "rescuer.log")
    assert rescuer.wait(timeout=180) == 0, (tmp_path / "rescuer.log").read_text()
    trials = optuna.load_study(study_name="gone", storage=pg_url).get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE and not t.user_attrs.get(OVER_BUDGET_ATTR)]
    assert len(complete) == 4
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and [t for t in complete if t.system_attrs.get("failed_trial") == failed[0].number]
