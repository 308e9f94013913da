"""The retrying storage on a stand-in database: what is retried, what is not, the two lines, giving up,
a commit that landed before the connection dropped, and no stale verdicts right after an outage."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import exc as sa_exc

import xaiopt.study.resilient as resilient
from xaiopt.study.resilient import ResilientStorage, StorageUnavailable, is_connection_error


def _down() -> Exception:
    err = sa_exc.OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
    wrapped = optuna.exceptions.StorageInternalError("An exception is raised during the commit.")
    wrapped.__cause__ = err
    return wrapped


class FakeDatabase:
    """Answers like an RDBStorage; ``down`` calls fail as if the server were gone."""

    def __init__(self, down: int = 0):
        self.down = down
        self.calls = 0
        self.state = TrialState.RUNNING
        self.heartbeat_interval = 1
        self.grace_period = 5

    def _maybe_fail(self):
        self.calls += 1
        if self.down > 0:
            self.down -= 1
            raise _down()

    def get_study_id_from_name(self, name):
        self._maybe_fail()
        return 7

    def set_trial_user_attr(self, trial_id, key, value):
        self._maybe_fail()
        raise sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key"))

    def set_trial_state_values(self, trial_id, state, values=None):
        if self.state != TrialState.RUNNING:
            raise optuna.exceptions.UpdateFinishedTrialError(f"trial {trial_id} is already finished")
        self.state = state  # the commit lands ...
        self._maybe_fail()  # ... and then the connection drops before the answer comes back
        return True

    def get_trial(self, trial_id):
        class T:
            state = self.state
        return T()

    def get_heartbeat_interval(self):
        return self.heartbeat_interval

    def _get_stale_trial_ids(self, study_id):
        self._maybe_fail()
        return [3]


@pytest.fixture(autouse=True)
def no_recovery_seen():
    """The process-wide record of the last recovery (xaiopt/study/resilient.py) starts empty in every
    test: each fakes its own clock and database."""
    from xaiopt.study import resilient

    resilient._LAST_RECOVERY.clear()
    yield
    resilient._LAST_RECOVERY.clear()


@pytest.fixture
def clock(monkeypatch):
    """Time passes only when the storage sleeps."""
    now = [1000.0]
    monkeypatch.setattr(resilient.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(resilient.time, "sleep", lambda s: now.__setitem__(0, now[0] + s))
    return now


def test_connection_errors_are_retried_with_one_line_each_way(clock):
    said = []
    db = FakeDatabase(down=5)
    storage = ResilientStorage(db, retry_seconds=60, say=said.append)
    assert storage.get_study_id_from_name("s") == 7
    assert db.calls == 6
    assert len(said) == 2
    assert said[0].startswith("xaiopt: the database is unreachable (server closed the connection unexpectedly)")
    assert said[1].startswith("xaiopt: the database is reachable again after ")
    # the waits grew: 0.5 s doubling to 8 s, jittered by 0.5x to 1.5x
    assert 0.5 * (0.5 + 1 + 2 + 4 + 8) <= clock[0] - 1000.0 <= 1.5 * (0.5 + 1 + 2 + 4 + 8)


def test_other_errors_are_raised_at_once(clock):
    db = FakeDatabase()
    storage = ResilientStorage(db, retry_seconds=60, say=lambda s: None)
    with pytest.raises(sa_exc.IntegrityError):
        storage.set_trial_user_attr(1, "k", "v")
    assert db.calls == 1 and clock[0] == 1000.0
    assert not is_connection_error(ValueError("x")) and is_connection_error(_down())


def test_past_the_retry_time_it_gives_up_in_one_line(clock):
    said = []
    storage = ResilientStorage(FakeDatabase(down=10**6), retry_seconds=30, say=said.append,
                               scrub=lambda t: t.replace("unexpectedly", "***"))
    with pytest.raises(StorageUnavailable) as err:
        storage.get_study_id_from_name("s")
    assert err.value.exit_code == 75
    assert str(err.value).startswith("storage: the database stayed unreachable for 30 s "
                                     "(runtime.storage_retry_seconds = 30)")
    assert "***" in str(err.value) and "\n" not in str(err.value)
    assert len(said) == 1


def test_a_final_state_whose_commit_landed_is_recorded_once(clock):
    db = FakeDatabase(down=1)
    storage = ResilientStorage(db, retry_seconds=60, say=lambda s: None)
    # the first attempt committed, lost its answer; the retry finds the trial finished as asked
    assert storage.set_trial_state_values(5, state=TrialState.COMPLETE, values=[1.0]) is True
    assert db.state == TrialState.COMPLETE
    # but a trial finished otherwise (by another worker) is still an error
    db2 = FakeDatabase()
    db2.state = TrialState.FAIL
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        ResilientStorage(db2, retry_seconds=60, say=lambda s: None).set_trial_state_values(5, TrialState.COMPLETE)


def test_no_trial_is_called_stale_right_after_an_outage(clock):
    db = FakeDatabase(down=2)
    storage = ResilientStorage(db, retry_seconds=60, say=lambda s: None)
    storage.get_study_id_from_name("s")  # the outage, and the recovery
    assert storage._get_stale_trial_ids(7) == []  # every heartbeat is old now: no verdict yet
    clock[0] += db.grace_period + db.heartbeat_interval + 1.5 * resilient.LONGEST_WAIT + 1.5
    assert storage._get_stale_trial_ids(7) == [3]  # live workers have beaten again since


def test_a_stale_check_that_itself_waited_out_the_outage_calls_no_one_stale(clock):
    db = FakeDatabase(down=3)  # the check is the call that meets the outage
    storage = ResilientStorage(db, retry_seconds=60, say=lambda s: None)
    assert storage._get_stale_trial_ids(7) == []
    assert db.calls == 4


def test_it_is_an_optuna_storage_with_heartbeats():
    from optuna.storages._heartbeat import is_heartbeat_enabled

    storage = ResilientStorage(FakeDatabase(), retry_seconds=1)
    assert isinstance(storage, optuna.storages.BaseStorage) and is_heartbeat_enabled(storage)
